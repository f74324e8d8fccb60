#include "tests/iser/store/store_test_util.h"

#include <stdlib.h>
#include <sys/stat.h>

#include <filesystem>

#include "gtest/gtest.h"
#include "iser/base/event_loop.h"

namespace iser::store::testing {

std::string IoPathName(IoPath path) { return path == IoPath::kIoUring ? "IoUring" : "Inline"; }

TempDir::TempDir() {
  std::string tmpl = (std::filesystem::temp_directory_path() / "iser_store_XXXXXX").string();
  char* dir = mkdtemp(tmpl.data());
  if (dir == nullptr) ADD_FAILURE() << "mkdtemp failed";
  path_ = tmpl;
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

void RunOn(IoPath path, absl::AnyInvocable<void(std::function<void()> finish)> body) {
  if (path == IoPath::kInline) {
    bool finished = false;
    body([&finished] { finished = true; });
    EXPECT_TRUE(finished) << "inline path did not complete before returning";
    return;
  }
  absl::StatusOr<std::unique_ptr<EventLoop>> loop = EventLoop::Create();
  ASSERT_TRUE(loop.ok()) << loop.status();
  EventLoop* l = loop->get();
  bool finished = false;
  l->Post([&] {
    body([&finished, l] {
      finished = true;
      l->Stop();
    });
  });
  // A hung completion fails the test instead of hanging it.
  l->Post([l] { l->RunAfter(absl::Seconds(20), [l] { l->Stop(); }); });
  l->Run();
  EXPECT_TRUE(finished) << "io_uring path timed out";
}

absl::Status RunOne(IoPath path, absl::AnyInvocable<void(IoCallback done)> start) {
  absl::Status result = absl::UnknownError("callback never ran");
  int calls = 0;
  bool returned = false;  // start() has returned
  RunOn(path, [&](std::function<void()> finish) {
    start([&, finish](absl::Status s) {
      ++calls;
      result = std::move(s);
      if (path == IoPath::kIoUring && result.ok()) {
        EXPECT_TRUE(returned) << "io_uring completion ran inline";
      }
      finish();
    });
    returned = true;
  });
  EXPECT_EQ(calls, 1);
  return result;
}

absl::Status ReadSync(IoPath path, BlockStore& store, uint64_t offset, std::span<uint8_t> dst) {
  return RunOne(path, [&](IoCallback done) { store.Read(offset, dst, std::move(done)); });
}

absl::Status WriteSync(IoPath path, BlockStore& store, uint64_t offset,
                       std::span<const uint8_t> src, bool fua) {
  return RunOne(path, [&](IoCallback done) { store.Write(offset, src, fua, std::move(done)); });
}

absl::Status FlushSync(IoPath path, BlockStore& store) {
  return RunOne(path, [&](IoCallback done) { store.Flush(std::move(done)); });
}

absl::Status UnmapSync(IoPath path, BlockStore& store, uint64_t offset, uint64_t length) {
  return RunOne(path, [&](IoCallback done) { store.Unmap(offset, length, std::move(done)); });
}

absl::Status WriteZeroesSync(IoPath path, BlockStore& store, uint64_t offset, uint64_t length,
                             bool deallocate) {
  return RunOne(path, [&](IoCallback done) {
    store.WriteZeroes(offset, length, deallocate, std::move(done));
  });
}

std::vector<uint8_t> Pattern(size_t size, uint32_t seed) {
  std::vector<uint8_t> v(size);
  uint32_t x = seed * 2654435761u + 1;
  for (size_t i = 0; i < size; ++i) {
    x = x * 1103515245u + 12345u;
    v[i] = static_cast<uint8_t>((x >> 16) | 1);  // never zero: tells data from holes
  }
  return v;
}

uint64_t AllocatedSectors(const std::string& file) {
  struct stat st {};
  if (stat(file.c_str(), &st) != 0) return ~0ull;
  return st.st_blocks;
}

}  // namespace iser::store::testing
