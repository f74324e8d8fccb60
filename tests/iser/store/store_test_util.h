// Helpers for store tests: a temporary directory and a runner that drives an asynchronous
// BlockStore call to completion either on a running EventLoop (the io_uring path) or with
// no loop at all (the inline fallback).
#ifndef TESTS_ISER_STORE_STORE_TEST_UTIL_H_
#define TESTS_ISER_STORE_STORE_TEST_UTIL_H_

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "iser/store/block_store.h"

namespace iser::store::testing {

enum class IoPath { kIoUring, kInline };
std::string IoPathName(IoPath path);

class TempDir {
 public:
  TempDir();
  ~TempDir();
  const std::string& path() const { return path_; }
  std::string File(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// Runs `body` to completion on `path`. For kIoUring a fresh EventLoop runs on this thread
// and `body` is posted to it; body calls `finish` when all its work is done (the loop then
// stops). For kInline body runs directly and must have called finish before returning.
void RunOn(IoPath path, absl::AnyInvocable<void(std::function<void()> finish)> body);

// One call: `start(done)`; returns the status given to done, and checks that done ran
// exactly once (inline for kInline, later on the loop for kIoUring).
absl::Status RunOne(IoPath path, absl::AnyInvocable<void(IoCallback done)> start);

absl::Status ReadSync(IoPath path, BlockStore& store, uint64_t offset, std::span<uint8_t> dst);
absl::Status WriteSync(IoPath path, BlockStore& store, uint64_t offset,
                       std::span<const uint8_t> src, bool fua = false);
absl::Status FlushSync(IoPath path, BlockStore& store);
absl::Status UnmapSync(IoPath path, BlockStore& store, uint64_t offset, uint64_t length);
absl::Status WriteZeroesSync(IoPath path, BlockStore& store, uint64_t offset, uint64_t length,
                             bool deallocate);

// Deterministic bytes for (seed, index) so any range can be checked after the fact.
std::vector<uint8_t> Pattern(size_t size, uint32_t seed);
// Number of 512-byte units the file system has allocated for `file`.
uint64_t AllocatedSectors(const std::string& file);

}  // namespace iser::store::testing

#endif  // TESTS_ISER_STORE_STORE_TEST_UTIL_H_
