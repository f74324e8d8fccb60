#include "iser/store/sparse_file_store.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <vector>

#include "gtest/gtest.h"
#include "iser/store/uring_ring.h"
#include "tests/iser/store/store_test_util.h"

namespace iser::store {
namespace {

using testing::IoPath;
using testing::Pattern;

constexpr uint64_t kMiB = 1 << 20;

struct Param {
  IoPath path;
  uint32_t block_size;
};

class SparseFileStoreTest : public ::testing::TestWithParam<Param> {
 protected:
  IoPath path() const { return GetParam().path; }
  uint32_t bs() const { return GetParam().block_size; }

  std::unique_ptr<SparseFileStore> OpenStore(uint64_t size, const std::string& name = "lun") {
    SparseFileStore::Options o;
    o.size_bytes = size;
    o.block_size = bs();
    o.nowait_fast_path = false;  // these tests exercise the ring itself
    auto store = SparseFileStore::Open(dir_.File(name), o);
    EXPECT_TRUE(store.ok()) << store.status();
    return store.ok() ? std::move(*store) : nullptr;
  }

  std::vector<uint8_t> ReadBack(SparseFileStore& s, uint64_t offset, size_t len) {
    std::vector<uint8_t> out(len, 0xEE);
    EXPECT_TRUE(testing::ReadSync(path(), s, offset, out).ok());
    return out;
  }

  static bool AllZero(const std::vector<uint8_t>& v) {
    for (uint8_t b : v)
      if (b != 0) return false;
    return true;
  }

  testing::TempDir dir_;
};

TEST_P(SparseFileStoreTest, UsesTheExpectedPath) {
  auto store = OpenStore(kMiB);
  ASSERT_NE(store, nullptr);
  bool uses = true;
  testing::RunOn(path(), [&](std::function<void()> finish) {
    uses = store->UsesIoUring();
    finish();
  });
  EXPECT_EQ(uses, path() == IoPath::kIoUring);
}

TEST_P(SparseFileStoreTest, CreatesThinFile) {
  auto store = OpenStore(1024 * kMiB);
  ASSERT_NE(store, nullptr);
  EXPECT_EQ(store->size_bytes(), 1024 * kMiB);
  EXPECT_EQ(store->block_size(), bs());
  EXPECT_EQ(store->num_blocks(), 1024 * kMiB / bs());
  EXPECT_TRUE(store->supports_unmap());
  EXPECT_EQ(testing::AllocatedSectors(dir_.File("lun")), 0u);
  auto run = store->GetLbaStatus(0, ~0ull);
  ASSERT_TRUE(run.ok()) << run.status();
  EXPECT_EQ(run->offset, 0u);
  EXPECT_EQ(run->length, 1024 * kMiB);
  EXPECT_FALSE(run->mapped);
}

TEST_P(SparseFileStoreTest, WriteReadRoundTrip) {
  auto store = OpenStore(8 * kMiB);
  ASSERT_NE(store, nullptr);
  const std::vector<std::pair<uint64_t, size_t>> extents = {
      {0, bs()}, {bs() * 3, bs() * 5}, {kMiB, 128 * 1024}, {8 * kMiB - bs(), bs()}};
  for (size_t i = 0; i < extents.size(); ++i) {
    auto data = Pattern(extents[i].second, i);
    ASSERT_TRUE(testing::WriteSync(path(), *store, extents[i].first, data).ok());
  }
  for (size_t i = 0; i < extents.size(); ++i)
    EXPECT_EQ(ReadBack(*store, extents[i].first, extents[i].second), Pattern(extents[i].second, i))
        << "extent " << i;
  // Never-written blocks read as zeroes.
  EXPECT_TRUE(AllZero(ReadBack(*store, 2 * kMiB, 64 * 1024)));
}

TEST_P(SparseFileStoreTest, FuaWriteAndFlushSucceed) {
  auto store = OpenStore(kMiB);
  ASSERT_NE(store, nullptr);
  auto data = Pattern(4 * bs(), 7);
  ASSERT_TRUE(testing::WriteSync(path(), *store, 0, data, /*fua=*/true).ok());
  ASSERT_TRUE(testing::FlushSync(path(), *store).ok());
  EXPECT_EQ(ReadBack(*store, 0, data.size()), data);
}

TEST_P(SparseFileStoreTest, UnmapReadsZeroesAndReportsDeallocated) {
  auto store = OpenStore(4 * kMiB);
  ASSERT_NE(store, nullptr);
  auto data = Pattern(2 * kMiB, 1);
  ASSERT_TRUE(testing::WriteSync(path(), *store, 0, data).ok());
  // Flush so the file system has real extents (SEEK_DATA sees dirty pages either way).
  ASSERT_TRUE(testing::FlushSync(path(), *store).ok());

  ASSERT_TRUE(testing::UnmapSync(path(), *store, 512 * 1024, 256 * 1024).ok());
  EXPECT_TRUE(AllZero(ReadBack(*store, 512 * 1024, 256 * 1024)));
  // The neighbours keep their data.
  EXPECT_EQ(ReadBack(*store, 0, 512 * 1024),
            std::vector<uint8_t>(data.begin(), data.begin() + 512 * 1024));
  EXPECT_EQ(ReadBack(*store, 768 * 1024, 256 * 1024),
            std::vector<uint8_t>(data.begin() + 768 * 1024, data.begin() + 1024 * 1024));

  struct Want {
    uint64_t offset, length;
    bool mapped;
  };
  const Want want[] = {{0, 512 * 1024, true},
                       {512 * 1024, 256 * 1024, false},
                       {768 * 1024, 2 * kMiB - 768 * 1024, true},
                       {2 * kMiB, 2 * kMiB, false}};
  for (const Want& w : want) {
    auto run = store->GetLbaStatus(w.offset, ~0ull);
    ASSERT_TRUE(run.ok()) << run.status();
    EXPECT_EQ(run->offset, w.offset);
    EXPECT_EQ(run->length, w.length) << "run at " << w.offset;
    EXPECT_EQ(run->mapped, w.mapped) << "run at " << w.offset;
  }
  // max_length caps a run.
  auto capped = store->GetLbaStatus(0, 64 * 1024);
  ASSERT_TRUE(capped.ok());
  EXPECT_EQ(capped->length, 64 * 1024u);
  EXPECT_TRUE(capped->mapped);
}

TEST_P(SparseFileStoreTest, PartlyWrittenBlockCountsAsMapped) {
  auto store = OpenStore(kMiB);
  ASSERT_NE(store, nullptr);
  auto data = Pattern(bs(), 3);
  ASSERT_TRUE(testing::WriteSync(path(), *store, 64 * 1024 + bs(), data).ok());
  auto hole = store->GetLbaStatus(0, kMiB);
  ASSERT_TRUE(hole.ok());
  EXPECT_FALSE(hole->mapped);
  // File systems map at least a page; the mapped run holds our block and is block-aligned.
  auto mapped = store->GetLbaStatus(hole->length, kMiB);
  ASSERT_TRUE(mapped.ok());
  EXPECT_TRUE(mapped->mapped);
  EXPECT_LE(mapped->offset, 64 * 1024 + bs());
  EXPECT_GE(mapped->offset + mapped->length, 64 * 1024 + 2 * bs());
  EXPECT_EQ(mapped->length % bs(), 0u);
}

TEST_P(SparseFileStoreTest, WriteZeroes) {
  auto store = OpenStore(2 * kMiB);
  ASSERT_NE(store, nullptr);
  auto data = Pattern(kMiB, 5);
  ASSERT_TRUE(testing::WriteSync(path(), *store, 0, data).ok());
  ASSERT_TRUE(testing::WriteZeroesSync(path(), *store, 0, 128 * 1024, /*deallocate=*/false).ok());
  ASSERT_TRUE(
      testing::WriteZeroesSync(path(), *store, 256 * 1024, 128 * 1024, /*deallocate=*/true).ok());
  EXPECT_TRUE(AllZero(ReadBack(*store, 0, 128 * 1024)));
  EXPECT_TRUE(AllZero(ReadBack(*store, 256 * 1024, 128 * 1024)));
  EXPECT_EQ(ReadBack(*store, 128 * 1024, 128 * 1024),
            std::vector<uint8_t>(data.begin() + 128 * 1024, data.begin() + 256 * 1024));
  auto run = store->GetLbaStatus(256 * 1024, kMiB);
  ASSERT_TRUE(run.ok());
  EXPECT_FALSE(run->mapped);
  EXPECT_EQ(run->length, 128 * 1024u);
}

TEST_P(SparseFileStoreTest, ResizeGrowAndShrink) {
  auto store = OpenStore(kMiB);
  ASSERT_NE(store, nullptr);
  auto data = Pattern(kMiB, 9);
  ASSERT_TRUE(testing::WriteSync(path(), *store, 0, data).ok());

  ASSERT_TRUE(store->Resize(4 * kMiB).ok());
  EXPECT_EQ(store->size_bytes(), 4 * kMiB);
  struct stat st {};
  ASSERT_EQ(stat(dir_.File("lun").c_str(), &st), 0);
  EXPECT_EQ(static_cast<uint64_t>(st.st_size), 4 * kMiB);
  EXPECT_EQ(ReadBack(*store, 0, kMiB), data);
  EXPECT_TRUE(AllZero(ReadBack(*store, 3 * kMiB, kMiB)));
  ASSERT_TRUE(testing::WriteSync(path(), *store, 3 * kMiB, data).ok());

  ASSERT_TRUE(store->Resize(512 * 1024).ok());
  EXPECT_EQ(store->size_bytes(), 512 * 1024u);
  ASSERT_EQ(stat(dir_.File("lun").c_str(), &st), 0);
  EXPECT_EQ(static_cast<uint64_t>(st.st_size), 512 * 1024u);
  std::vector<uint8_t> buf(bs());
  EXPECT_EQ(testing::ReadSync(path(), *store, 512 * 1024, buf).code(),
            absl::StatusCode::kOutOfRange);
  // Growing again exposes zeroes, not the old data.
  ASSERT_TRUE(store->Resize(kMiB).ok());
  EXPECT_TRUE(AllZero(ReadBack(*store, 512 * 1024, 512 * 1024)));

  EXPECT_EQ(store->Resize(0).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(store->Resize(kMiB + 1).code(), absl::StatusCode::kInvalidArgument);
}

TEST_P(SparseFileStoreTest, ReadPastEndOfFileReadsZeroes) {
  auto store = OpenStore(kMiB);
  ASSERT_NE(store, nullptr);
  auto data = Pattern(kMiB, 11);
  ASSERT_TRUE(testing::WriteSync(path(), *store, 0, data).ok());
  // Someone else truncates the file under us: the tail reads as zeroes, the rest as data.
  ASSERT_EQ(truncate(dir_.File("lun").c_str(), 256 * 1024 + 100), 0);
  auto back = ReadBack(*store, 0, kMiB);
  EXPECT_TRUE(std::equal(back.begin(), back.begin() + 256 * 1024 + 100, data.begin()));
  EXPECT_TRUE(
      std::all_of(back.begin() + 256 * 1024 + 100, back.end(), [](uint8_t b) { return b == 0; }));
}

TEST_P(SparseFileStoreTest, RejectsBadRanges) {
  auto store = OpenStore(kMiB);
  ASSERT_NE(store, nullptr);
  std::vector<uint8_t> buf(bs());
  EXPECT_EQ(testing::ReadSync(path(), *store, 1, buf).code(), absl::StatusCode::kInvalidArgument);
  std::vector<uint8_t> odd(bs() + 1);
  EXPECT_EQ(testing::WriteSync(path(), *store, 0, odd).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(testing::WriteSync(path(), *store, kMiB, buf).code(), absl::StatusCode::kOutOfRange);
  EXPECT_EQ(testing::UnmapSync(path(), *store, kMiB - bs(), 2 * bs()).code(),
            absl::StatusCode::kOutOfRange);
  EXPECT_EQ(store->GetLbaStatus(kMiB, bs()).status().code(), absl::StatusCode::kOutOfRange);
  EXPECT_EQ(store->GetLbaStatus(bs() / 2, bs()).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_P(SparseFileStoreTest, ReadOnlyRejectsWrites) {
  { ASSERT_NE(OpenStore(kMiB), nullptr); }
  SparseFileStore::Options o;
  o.nowait_fast_path = false;
  o.block_size = bs();
  o.read_only = true;
  auto store = SparseFileStore::Open(dir_.File("lun"), o);
  ASSERT_TRUE(store.ok()) << store.status();
  EXPECT_FALSE((*store)->supports_unmap());
  std::vector<uint8_t> buf(bs());
  EXPECT_EQ(testing::WriteSync(path(), **store, 0, buf).code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(testing::UnmapSync(path(), **store, 0, bs()).code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ((*store)->Resize(2 * kMiB).code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(testing::ReadSync(path(), **store, 0, buf).ok());
  EXPECT_TRUE(testing::FlushSync(path(), **store).ok());
}

// 512 operations outstanding against a ring of 256: each completes exactly once, the excess
// waits in the overflow queue, and the data is right.
TEST_P(SparseFileStoreTest, ManyOutstandingOperationsCompleteOnce) {
  constexpr int kOps = 512;
  const size_t len = 2 * bs();
  auto store = OpenStore(kOps * len);
  ASSERT_NE(store, nullptr);
  std::vector<std::vector<uint8_t>> bufs;
  for (int i = 0; i < kOps; ++i) bufs.push_back(Pattern(len, 100 + i));
  std::vector<int> calls(kOps, 0);
  std::vector<absl::Status> results(kOps);
  size_t max_queued = 0;
  auto issue = [&](bool write, std::function<void()> finish) {
    auto remaining = std::make_shared<int>(kOps);
    for (int i = 0; i < kOps; ++i) {
      auto done = [&, i, remaining, finish](absl::Status s) {
        ++calls[i];
        results[i] = std::move(s);
        if (--*remaining == 0) finish();
      };
      if (write) {
        store->Write(i * len, bufs[i], /*fua=*/false, done);
      } else {
        store->Read(i * len, bufs[i], done);
      }
    }
    if (UringRing* ring = UringRing::ForCurrentLoop()) {
      max_queued = ring->queued();
      EXPECT_LE(ring->in_flight(), ring->depth());
    }
  };
  testing::RunOn(path(), [&](std::function<void()> finish) { issue(true, finish); });
  for (int i = 0; i < kOps; ++i) {
    EXPECT_EQ(calls[i], 1) << "write " << i;
    EXPECT_TRUE(results[i].ok()) << results[i];
  }
  if (path() == IoPath::kIoUring) EXPECT_EQ(max_queued, kOps - UringRing::kDefaultDepth);
  for (auto& b : bufs) std::fill(b.begin(), b.end(), 0);
  std::fill(calls.begin(), calls.end(), 0);
  testing::RunOn(path(), [&](std::function<void()> finish) { issue(false, finish); });
  for (int i = 0; i < kOps; ++i) {
    EXPECT_EQ(calls[i], 1) << "read " << i;
    EXPECT_EQ(bufs[i], Pattern(len, 100 + i)) << "read " << i;
  }
}

// The store may go away while its I/O is in flight; the I/O still completes.
TEST_P(SparseFileStoreTest, StoreDestroyedWithIoInFlight) {
  auto store = OpenStore(kMiB);
  ASSERT_NE(store, nullptr);
  auto data = Pattern(64 * 1024, 21);
  absl::Status result = absl::UnknownError("not run");
  testing::RunOn(path(), [&](std::function<void()> finish) {
    store->Write(0, data, /*fua=*/true, [&, finish](absl::Status s) {
      result = s;
      finish();
    });
    store.reset();
  });
  EXPECT_TRUE(result.ok()) << result;
  auto again = OpenStore(0);
  ASSERT_NE(again, nullptr);
  EXPECT_EQ(ReadBack(*again, 0, data.size()), data);
}

INSTANTIATE_TEST_SUITE_P(
    Paths, SparseFileStoreTest,
    ::testing::Values(Param{IoPath::kIoUring, 512}, Param{IoPath::kIoUring, 4096},
                      Param{IoPath::kInline, 512}, Param{IoPath::kInline, 4096}),
    [](const ::testing::TestParamInfo<Param>& info) {
      return testing::IoPathName(info.param.path) + std::to_string(info.param.block_size);
    });


// With the RWF_NOWAIT fast path, page-cache hits complete before Read() returns even on
// the io_uring path, and the data is right; a FUA write still completes (via the ring).
TEST(SparseFileStoreFastPathTest, CachedReadCompletesInline) {
  testing::TempDir dir;
  SparseFileStore::Options o;
  o.size_bytes = 1 << 20;
  auto store = SparseFileStore::Open(dir.File("lun"), o);
  ASSERT_TRUE(store.ok()) << store.status();
  std::vector<uint8_t> data(8192);
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<uint8_t>(i * 13);
  ASSERT_TRUE(testing::WriteSync(testing::IoPath::kInline, **store, 4096, data, true).ok());
  auto loop = EventLoop::Create();
  ASSERT_TRUE(loop.ok());
  std::vector<uint8_t> out(8192, 0);
  bool inline_done = false, returned = false;
  (*loop)->Post([&] {
    (*store)->Read(4096, out, [&](absl::Status s) {
      EXPECT_TRUE(s.ok()) << s;
      inline_done = !returned;
    });
    returned = true;
    (*loop)->Stop();
  });
  (*loop)->Run();
  EXPECT_TRUE(inline_done);
  EXPECT_EQ(out, data);
}

}  // namespace
}  // namespace iser::store
