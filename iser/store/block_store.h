// The store seam: what SCSI handlers ask of the bytes behind a LUN.
//
// Asynchronous by contract (librbd aio and io_uring are the models): every data call
// takes a completion callback. A backend may complete inline, before the call returns,
// or later on the submitting thread's EventLoop; callers must handle both. Completions
// never run on another thread.
//
// Offsets and lengths are in bytes and must be multiples of block_size(); the SCSI layer
// has already checked them against capacity.
#ifndef ISER_STORE_BLOCK_STORE_H_
#define ISER_STORE_BLOCK_STORE_H_

#include <cstdint>
#include <span>

#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace iser::store {

using IoCallback = absl::AnyInvocable<void(absl::Status)>;

// One run of blocks with the same provisioning state (GET LBA STATUS).
struct LbaRun {
  uint64_t offset = 0;  // bytes
  uint64_t length = 0;  // bytes
  bool mapped = true;   // false: deallocated (reads return zeroes)
};

class BlockStore {
 public:
  virtual ~BlockStore() = default;

  virtual uint32_t block_size() const = 0;
  virtual uint64_t size_bytes() const = 0;
  uint64_t num_blocks() const { return size_bytes() / block_size(); }
  // True if Unmap() really deallocates (thin provisioning); reported in VPD page 0xB2.
  virtual bool supports_unmap() const = 0;

  virtual void Read(uint64_t offset, std::span<uint8_t> dst, IoCallback done) = 0;
  // fua: the data is durable when `done` runs (as if followed by Flush()).
  virtual void Write(uint64_t offset, std::span<const uint8_t> src, bool fua, IoCallback done) = 0;
  // Makes every completed write durable (fdatasync).
  virtual void Flush(IoCallback done) = 0;
  // Deallocates; later reads return zeroes.
  virtual void Unmap(uint64_t offset, uint64_t length, IoCallback done) = 0;
  // Writes zeroes over the range; `deallocate` lets the backend punch a hole instead.
  virtual void WriteZeroes(uint64_t offset, uint64_t length, bool deallocate, IoCallback done) = 0;

  // Provisioning state of the run that starts at `offset` (at most `max_length` bytes).
  virtual absl::StatusOr<LbaRun> GetLbaStatus(uint64_t offset, uint64_t max_length) = 0;
  // Grows (or shrinks) the store; the SCSI layer raises a capacity-changed unit attention.
  virtual absl::Status Resize(uint64_t new_size_bytes) = 0;
};

}  // namespace iser::store

#endif  // ISER_STORE_BLOCK_STORE_H_
