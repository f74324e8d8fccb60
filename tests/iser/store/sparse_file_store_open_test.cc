// Open(): creation, sizing, validation errors and the flock between stores.
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "gtest/gtest.h"
#include "iser/store/sparse_file_store.h"
#include "tests/iser/store/store_test_util.h"

namespace iser::store {
namespace {

constexpr uint64_t kMiB = 1 << 20;
using Options = SparseFileStore::Options;

Options Sized(uint64_t size, uint32_t bs = 512) {
  Options o;
  o.size_bytes = size;
  o.block_size = bs;
  return o;
}

class OpenTest : public ::testing::Test {
 protected:
  testing::TempDir dir_;
  std::string file_ = dir_.File("lun");
};

TEST_F(OpenTest, MissingFileWithoutSizeIsNotFound) {
  EXPECT_EQ(SparseFileStore::Open(file_, Options{}).status().code(), absl::StatusCode::kNotFound);
}

TEST_F(OpenTest, CreatesThenReopensWithExistingSize) {
  ASSERT_TRUE(SparseFileStore::Open(file_, Sized(3 * kMiB)).ok());
  auto again = SparseFileStore::Open(file_, Options{});
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ((*again)->size_bytes(), 3 * kMiB);
}

TEST_F(OpenTest, GrowsButNeverShrinksOnOpen) {
  ASSERT_TRUE(SparseFileStore::Open(file_, Sized(kMiB)).ok());
  auto grown = SparseFileStore::Open(file_, Sized(2 * kMiB));
  ASSERT_TRUE(grown.ok());
  EXPECT_EQ((*grown)->size_bytes(), 2 * kMiB);
  grown->reset();
  auto kept = SparseFileStore::Open(file_, Sized(kMiB));
  ASSERT_TRUE(kept.ok());
  EXPECT_EQ((*kept)->size_bytes(), 2 * kMiB);
}

TEST_F(OpenTest, RejectsBadBlockSize) {
  EXPECT_EQ(SparseFileStore::Open(file_, Sized(kMiB, 1024)).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(SparseFileStore::Open(file_, Sized(kMiB, 0)).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(OpenTest, RejectsSizeNotMultipleOfBlock) {
  EXPECT_EQ(SparseFileStore::Open(file_, Sized(kMiB + 512, 4096)).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(access(file_.c_str(), F_OK), -1) << "a failed open must not leave a file";
  // An existing file whose size is not a multiple of the block size.
  int fd = open(file_.c_str(), O_CREAT | O_WRONLY, 0600);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(ftruncate(fd, 4096 + 512), 0);
  close(fd);
  auto s = SparseFileStore::Open(file_, Sized(0, 4096)).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_TRUE(SparseFileStore::Open(file_, Sized(0, 512)).ok());
}

TEST_F(OpenTest, RejectsEmptyFileWithoutSize) {
  close(open(file_.c_str(), O_CREAT | O_WRONLY, 0600));
  EXPECT_EQ(SparseFileStore::Open(file_, Options{}).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(OpenTest, RejectsDirectory) {
  auto s = SparseFileStore::Open(dir_.path(), Options{}).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
}

TEST_F(OpenTest, ReadOnlyCannotGrow) {
  ASSERT_TRUE(SparseFileStore::Open(file_, Sized(kMiB)).ok());
  Options o = Sized(2 * kMiB);
  o.read_only = true;
  EXPECT_EQ(SparseFileStore::Open(file_, o).status().code(), absl::StatusCode::kFailedPrecondition);
}

TEST_F(OpenTest, UnreadableFileIsPermissionDenied) {
  ASSERT_TRUE(SparseFileStore::Open(file_, Sized(kMiB)).ok());
  ASSERT_EQ(chmod(file_.c_str(), 0), 0);
  ASSERT_EQ(chmod(dir_.path().c_str(), 0755), 0);
  // Root ignores file modes, so try as an unprivileged user in a child.
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    if (geteuid() == 0 && setuid(65534) != 0) _exit(3);
    auto s = SparseFileStore::Open(file_, Options{}).status();
    _exit(s.code() == absl::StatusCode::kPermissionDenied ? 0 : 1);
  }
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0);
}

TEST_F(OpenTest, SecondWriterIsLockedOut) {
  auto first = SparseFileStore::Open(file_, Sized(kMiB));
  ASSERT_TRUE(first.ok());
  auto second = SparseFileStore::Open(file_, Options{});
  EXPECT_EQ(second.status().code(), absl::StatusCode::kUnavailable) << second.status();
  Options ro;
  ro.read_only = true;
  EXPECT_EQ(SparseFileStore::Open(file_, ro).status().code(), absl::StatusCode::kUnavailable);
  first->reset();  // closing releases the lock
  EXPECT_TRUE(SparseFileStore::Open(file_, Options{}).ok());
}

TEST_F(OpenTest, LockIsHeldAgainstAnotherProcess) {
  auto first = SparseFileStore::Open(file_, Sized(kMiB));
  ASSERT_TRUE(first.ok());
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    auto s = SparseFileStore::Open(file_, Options{}).status();
    _exit(s.code() == absl::StatusCode::kUnavailable ? 0 : 1);
  }
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0);
}

TEST_F(OpenTest, ReadersShareTheLock) {
  ASSERT_TRUE(SparseFileStore::Open(file_, Sized(kMiB)).ok());
  Options ro;
  ro.read_only = true;
  auto a = SparseFileStore::Open(file_, ro);
  auto b = SparseFileStore::Open(file_, ro);
  EXPECT_TRUE(a.ok()) << a.status();
  EXPECT_TRUE(b.ok()) << b.status();
  EXPECT_EQ(SparseFileStore::Open(file_, Options{}).status().code(),
            absl::StatusCode::kUnavailable);
}

TEST_F(OpenTest, WorksOnTmpfsWithoutZeroRange) {
  // tmpfs punches holes but has no FALLOC_FL_ZERO_RANGE: WriteZeroes falls back to writes.
  if (access("/dev/shm", W_OK) != 0) GTEST_SKIP() << "no writable /dev/shm";
  std::string file = "/dev/shm/iser_store_test_" + std::to_string(getpid());
  for (auto path : {testing::IoPath::kIoUring, testing::IoPath::kInline}) {
    Options o = Sized(kMiB);
    o.nowait_fast_path = false;  // exercise the ring itself, not the inline tmpfs path
    auto store = SparseFileStore::Open(file, o);
    ASSERT_TRUE(store.ok()) << store.status();
    auto data = testing::Pattern(kMiB, 4);
    ASSERT_TRUE(testing::WriteSync(path, **store, 0, data).ok());
    ASSERT_TRUE(testing::WriteZeroesSync(path, **store, 0, 64 * 1024, false).ok());
    ASSERT_TRUE(testing::UnmapSync(path, **store, 64 * 1024, 64 * 1024).ok());
    std::vector<uint8_t> back(128 * 1024, 0xEE);
    ASSERT_TRUE(testing::ReadSync(path, **store, 0, back).ok());
    EXPECT_EQ(back, std::vector<uint8_t>(back.size(), 0)) << testing::IoPathName(path);
  }
  unlink(file.c_str());
}

TEST_F(OpenTest, TmpfsIoRunsInlineOnTheLoop) {
  // tmpfs refuses RWF_NOWAIT; its I/O never waits for a device, so the store does it
  // inline instead of handing every request to an io_uring worker thread.
  if (access("/dev/shm", W_OK) != 0) GTEST_SKIP() << "no writable /dev/shm";
  std::string file = "/dev/shm/iser_store_inline_" + std::to_string(getpid());
  auto store = SparseFileStore::Open(file, Sized(kMiB));
  ASSERT_TRUE(store.ok()) << store.status();
  auto data = testing::Pattern(64 * 1024, 9);
  std::vector<uint8_t> back(data.size());
  bool wrote_inline = false, read_inline = false;
  testing::RunOn(testing::IoPath::kIoUring, [&](std::function<void()> finish) {
    (*store)->Write(4096, data, false, [&](absl::Status s) {
      EXPECT_TRUE(s.ok()) << s;
      wrote_inline = true;
    });
    (*store)->Read(4096, back, [&](absl::Status s) {
      EXPECT_TRUE(s.ok()) << s;
      read_inline = true;
    });
    finish();
  });
  EXPECT_TRUE(wrote_inline);
  EXPECT_TRUE(read_inline);
  EXPECT_EQ(back, data);
  unlink(file.c_str());
}

}  // namespace
}  // namespace iser::store
