// fuse_loop end to end, as root, against the real kernel: loop device geometry, O_DIRECT
// round trips, ext4 across detach/re-expose, discard, flush, fio verify, async backend,
// and that Detach() leaves no loop device and no FUSE mount behind.
#include "node/exposure/fuse_loop/fuse_loop_exposure.h"

#include <fcntl.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <random>
#include <sstream>
#include <thread>
#include <vector>

#include "absl/strings/str_format.h"
#include "gtest/gtest.h"
#include "iser/base/event_loop.h"
#include "iser/base/unique_fd.h"
#include "node/exposure/memory_block_backend.h"
#include "tests/node/async_backend.h"
#include "tests/node/test_util.h"

namespace iser::node {
namespace {

using test_util::CommandResult;
using test_util::RunCommand;

class FuseLoopTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root (FUSE mount, loop devices)";
    if (::access("/dev/fuse", F_OK) != 0) GTEST_SKIP() << "no /dev/fuse";
    if (::access("/dev/loop-control", F_OK) != 0) GTEST_SKIP() << "no /dev/loop-control";
  }

  std::unique_ptr<MemoryBlockBackend> NewBackend(uint64_t size, uint32_t bs) {
    auto b = MemoryBlockBackend::Create(size, bs);
    EXPECT_TRUE(b.ok()) << b.status();
    return std::move(*b);
  }

  std::unique_ptr<FuseLoopDevice> Expose(BlockBackend& backend) {
    auto dev = exposure_.ExposeFuseLoop(backend, {.name = "test"});
    EXPECT_TRUE(dev.ok()) << dev.status();
    if (!dev.ok()) return nullptr;
    return std::move(*dev);
  }

  // After Detach(): no loop device bound to our file, no FUSE mount, no directory.
  static void ExpectNothingLeft(const FuseLoopHandles& h) {
    std::string loop_name = h.device_path.substr(5);  // "loopN"
    // Other tests (ctest -j) may reuse the index at once: compare what it is bound to.
    std::string backing;
    std::getline(std::ifstream("/sys/block/" + loop_name + "/loop/backing_file"), backing);
    EXPECT_EQ(backing.find(h.mount_dir), std::string::npos) << h.device_path << " still bound";
    struct stat st;
    std::ifstream mounts("/proc/self/mountinfo");
    std::string line;
    while (std::getline(mounts, line)) {
      EXPECT_EQ(line.find(h.mount_dir + " "), std::string::npos) << "still mounted: " << line;
    }
    EXPECT_NE(::stat(h.mount_dir.c_str(), &st), 0) << h.mount_dir << " still exists";
    CommandResult losetup = RunCommand("losetup -l -n -O NAME,BACK-FILE");
    EXPECT_EQ(losetup.output.find(h.file_path), std::string::npos) << losetup.output;
  }

  FuseLoopExposure exposure_;
};

std::vector<uint8_t> Pattern(size_t n, uint32_t seed) {
  std::vector<uint8_t> v(n);
  std::mt19937 rng(seed);
  for (auto& b : v) b = static_cast<uint8_t>(rng());
  return v;
}

struct AlignedBuffer {
  explicit AlignedBuffer(size_t n)
      : size(n), p(static_cast<uint8_t*>(std::aligned_alloc(4096, n))) {}
  ~AlignedBuffer() { std::free(p); }
  size_t size;
  uint8_t* p;
};

TEST_F(FuseLoopTest, GeometryMatchesLun) {
  for (uint32_t bs : {512u, 4096u}) {
    auto backend = NewBackend(64 << 20, bs);
    auto dev = Expose(*backend);
    ASSERT_NE(dev, nullptr);
    EXPECT_EQ(dev->device_path().rfind("/dev/loop", 0), 0u) << dev->device_path();
    EXPECT_TRUE(dev->direct_io_active());
    CommandResult sz = RunCommand("blockdev --getsz " + dev->device_path());
    CommandResult ss = RunCommand("blockdev --getss " + dev->device_path());
    EXPECT_EQ(sz.exit_code, 0) << sz.output;
    EXPECT_EQ(std::stoull(sz.output), (64u << 20) / 512);
    EXPECT_EQ(std::stoul(ss.output), bs);
    FuseLoopHandles h = dev->handles();
    EXPECT_GE(h.fuse_fd, 0);
    EXPECT_GE(h.loop_fd, 0);
    ASSERT_TRUE(dev->Detach().ok());
    ExpectNothingLeft(h);
  }
}

TEST_F(FuseLoopTest, DirectIoRoundTripReachesBackend) {
  auto backend = NewBackend(64 << 20, 4096);
  auto dev = Expose(*backend);
  ASSERT_NE(dev, nullptr);
  UniqueFd fd(::open(dev->device_path().c_str(), O_RDWR | O_DIRECT | O_CLOEXEC));
  ASSERT_TRUE(fd) << std::strerror(errno);
  const std::vector<std::pair<uint64_t, size_t>> ios = {
      {0, 4096}, {4096 * 7, 65536}, {(32 << 20) + 8192, 1 << 20}, {(64 << 20) - 4096, 4096}};
  uint32_t seed = 1;
  for (auto [off, len] : ios) {
    std::vector<uint8_t> want = Pattern(len, seed++);
    AlignedBuffer buf(len);
    std::memcpy(buf.p, want.data(), len);
    ASSERT_EQ(::pwrite(fd.get(), buf.p, len, off), static_cast<ssize_t>(len));
    std::memset(buf.p, 0, len);
    ASSERT_EQ(::pread(fd.get(), buf.p, len, off), static_cast<ssize_t>(len));
    EXPECT_EQ(std::memcmp(buf.p, want.data(), len), 0) << "offset " << off;
    // The bytes are in the backend, not only in some cache on the way.
    EXPECT_EQ(std::memcmp(backend->data() + off, want.data(), len), 0) << "offset " << off;
  }
  // The FUSE file itself also serves unaligned buffered reads (widened to whole blocks).
  {
    UniqueFd file(::open(dev->handles().file_path.c_str(), O_RDONLY | O_CLOEXEC));
    ASSERT_TRUE(file) << std::strerror(errno);
    std::vector<uint8_t> got(5000);
    ASSERT_EQ(::pread(file.get(), got.data(), got.size(), 4096 * 7 + 1000), 5000);
    EXPECT_EQ(std::memcmp(got.data(), backend->data() + 4096 * 7 + 1000, got.size()), 0);
    uint8_t one = 0;
    UniqueFd wfile(::open(dev->handles().file_path.c_str(), O_WRONLY | O_CLOEXEC));
    ASSERT_TRUE(wfile) << std::strerror(errno);
    EXPECT_LT(::pwrite(wfile.get(), &one, 1, 3), 0)
        << "an unaligned write must fail (EINVAL), not corrupt a block";
  }
  uint64_t flushes = backend->flushes();
  ASSERT_EQ(::fsync(fd.get()), 0);
  EXPECT_GT(backend->flushes(), flushes) << "fsync on the device did not reach Flush";
  fd.Reset();
  FuseLoopHandles h = dev->handles();
  ASSERT_TRUE(dev->Detach().ok());
  ExpectNothingLeft(h);
}

TEST_F(FuseLoopTest, DiscardReachesBackend) {
  auto backend = NewBackend(64 << 20, 4096);
  auto dev = Expose(*backend);
  ASSERT_NE(dev, nullptr);
  UniqueFd fd(::open(dev->device_path().c_str(), O_RDWR | O_DIRECT | O_CLOEXEC));
  ASSERT_TRUE(fd);
  AlignedBuffer buf(1 << 20);
  std::memset(buf.p, 0x5a, buf.size);
  ASSERT_EQ(::pwrite(fd.get(), buf.p, buf.size, 8 << 20), static_cast<ssize_t>(buf.size));
  uint64_t range[2] = {8 << 20, 1 << 20};
  ASSERT_EQ(::ioctl(fd.get(), BLKDISCARD, range), 0) << std::strerror(errno);
  EXPECT_GE(backend->discards(), 1u);
  EXPECT_GE(backend->discarded_bytes(), 1u << 20);
  ASSERT_EQ(::pread(fd.get(), buf.p, buf.size, 8 << 20), static_cast<ssize_t>(buf.size));
  EXPECT_EQ(std::vector<uint8_t>(buf.p, buf.p + buf.size), std::vector<uint8_t>(buf.size, 0));

  // BLKZEROOUT (REQ_NOUNMAP -> fallocate ZERO_RANGE): zeroes written, nothing discarded.
  std::memset(buf.p, 0x77, buf.size);
  ASSERT_EQ(::pwrite(fd.get(), buf.p, buf.size, 16 << 20), static_cast<ssize_t>(buf.size));
  const uint64_t discards = backend->discards();
  uint64_t zero_range[2] = {16 << 20, 1 << 20};
  ASSERT_EQ(::ioctl(fd.get(), BLKZEROOUT, zero_range), 0) << std::strerror(errno);
  EXPECT_EQ(backend->discards(), discards);
  ASSERT_EQ(::pread(fd.get(), buf.p, buf.size, 16 << 20), static_cast<ssize_t>(buf.size));
  EXPECT_EQ(std::vector<uint8_t>(buf.p, buf.p + buf.size), std::vector<uint8_t>(buf.size, 0));
  fd.Reset();
  ASSERT_TRUE(dev->Detach().ok());
}

TEST_F(FuseLoopTest, Ext4SurvivesDetachAndReexpose) {
  auto backend = NewBackend(256 << 20, 4096);
  auto dev = Expose(*backend);
  ASSERT_NE(dev, nullptr);
  CommandResult mkfs = RunCommand("mkfs.ext4 -q -F " + dev->device_path());
  ASSERT_EQ(mkfs.exit_code, 0) << mkfs.output;
  EXPECT_GE(backend->discards(), 1u) << "mkfs.ext4 discards the device first";

  char tmpl[] = "/tmp/iser-node-test-XXXXXX";
  ASSERT_NE(::mkdtemp(tmpl), nullptr);
  const std::string mnt = tmpl;
  struct Cleanup {
    std::string dir;
    ~Cleanup() {
      ::umount2(dir.c_str(), MNT_DETACH);  // only if an assertion left it mounted
      ::rmdir(dir.c_str());
    }
  } cleanup{mnt};
  ASSERT_EQ(::mount(dev->device_path().c_str(), mnt.c_str(), "ext4", 0, nullptr), 0)
      << std::strerror(errno);
  std::vector<std::string> sums;
  for (int i = 0; i < 8; ++i) {
    std::vector<uint8_t> content = Pattern((i + 1) * 300000 + i, 100 + i);
    std::ofstream(absl::StrFormat("%s/file%d", mnt, i), std::ios::binary)
        .write(reinterpret_cast<const char*>(content.data()), content.size());
  }
  CommandResult sum = RunCommand("cd " + mnt + " && sha256sum file*");
  ASSERT_EQ(sum.exit_code, 0) << sum.output;

  // Busy: Detach refuses and leaves everything in place.
  absl::Status busy = dev->Detach();
  EXPECT_EQ(busy.code(), absl::StatusCode::kFailedPrecondition) << busy;
  ASSERT_EQ(::umount(mnt.c_str()), 0) << std::strerror(errno);
  FuseLoopHandles h = dev->handles();
  ASSERT_TRUE(dev->Detach().ok());
  ExpectNothingLeft(h);
  dev.reset();

  dev = Expose(*backend);
  ASSERT_NE(dev, nullptr);
  CommandResult fsck = RunCommand("fsck.ext4 -n -f " + dev->device_path());
  EXPECT_EQ(fsck.exit_code, 0) << fsck.output;
  ASSERT_EQ(::mount(dev->device_path().c_str(), mnt.c_str(), "ext4", 0, nullptr), 0)
      << std::strerror(errno);
  CommandResult check = RunCommand("cd " + mnt + " && sha256sum file*");
  EXPECT_EQ(check.output, sum.output);
  ASSERT_EQ(::umount(mnt.c_str()), 0);
  h = dev->handles();
  ASSERT_TRUE(dev->Detach().ok());
  ExpectNothingLeft(h);
}

TEST_F(FuseLoopTest, FioVerifyAtQueueDepth32) {
  if (RunCommand("fio --version").exit_code != 0) GTEST_SKIP() << "fio not installed";
  auto backend = NewBackend(256 << 20, 4096);
  auto dev = Expose(*backend);
  ASSERT_NE(dev, nullptr);
  const std::string common =
      "fio --name=verify --filename=" + dev->device_path() +
      " --ioengine=libaio --direct=1 --iodepth=32 --size=128M --verify=crc32c"
      " --do_verify=1 --verify_fatal=1 --error_dump=1 --verify_state_save=0";
  CommandResult rnd = RunCommand(common + " --rw=randwrite --bs=4k");
  EXPECT_EQ(rnd.exit_code, 0) << rnd.output;
  EXPECT_NE(rnd.output.find("err= 0"), std::string::npos) << rnd.output;
  CommandResult seq = RunCommand(common + " --rw=write --bs=128k --offset=128M");
  EXPECT_EQ(seq.exit_code, 0) << seq.output;
  EXPECT_NE(seq.output.find("err= 0"), std::string::npos) << seq.output;
  // More than one request was with the backend at once (threads, async DIO).
  EXPECT_GE(backend->max_concurrency(), 2u);
  FuseLoopHandles h = dev->handles();
  ASSERT_TRUE(dev->Detach().ok());
  ExpectNothingLeft(h);
}

TEST_F(FuseLoopTest, AsyncBackendGetsQueueDepthAndErrorsPropagate) {
  if (RunCommand("fio --version").exit_code != 0) GTEST_SKIP() << "fio not installed";
  auto memory = NewBackend(128 << 20, 4096);
  AsyncBackend backend(*memory);
  auto dev = Expose(backend);
  ASSERT_NE(dev, nullptr);
  CommandResult fio = RunCommand("fio --name=async --filename=" + dev->device_path() +
                                 " --ioengine=libaio --direct=1 --iodepth=32 --size=64M"
                                 " --rw=randwrite --bs=4k --verify=crc32c --verify_fatal=1"
                                 " --verify_state_save=0");
  EXPECT_EQ(fio.exit_code, 0) << fio.output;
  // Replies are sent from the backend's completions, so the kernel's queue depth reaches
  // the backend even with a handful of FUSE threads.
  EXPECT_GE(backend.max_outstanding.load(), 8) << "queue depth did not reach the backend";

  // Discard on a backend that does not promise zeroes: Discard, then zeroes written
  // (from a FUSE worker; the completion thread must never block).
  {
    UniqueFd fd(::open(dev->device_path().c_str(), O_RDWR | O_DIRECT | O_CLOEXEC));
    ASSERT_TRUE(fd);
    uint64_t range[2] = {4 << 20, 2 << 20};
    uint64_t discards = memory->discards();
    ASSERT_EQ(::ioctl(fd.get(), BLKDISCARD, range), 0) << std::strerror(errno);
    EXPECT_GT(memory->discards(), discards);
    AlignedBuffer zero(2 << 20);
    ASSERT_EQ(::pread(fd.get(), zero.p, zero.size, 4 << 20), static_cast<ssize_t>(zero.size));
    EXPECT_EQ(std::vector<uint8_t>(zero.p, zero.p + zero.size), std::vector<uint8_t>(zero.size, 0));
  }

  backend.fail_reads = true;
  UniqueFd fd(::open(dev->device_path().c_str(), O_RDONLY | O_DIRECT | O_CLOEXEC));
  ASSERT_TRUE(fd);
  AlignedBuffer buf(4096);
  errno = 0;
  EXPECT_LT(::pread(fd.get(), buf.p, 4096, 0), 0);
  EXPECT_EQ(errno, EIO);
  backend.fail_reads = false;
  EXPECT_EQ(::pread(fd.get(), buf.p, 4096, 0), 4096);
  fd.Reset();
  FuseLoopHandles h = dev->handles();
  ASSERT_TRUE(dev->Detach().ok());
  ExpectNothingLeft(h);
}

// The data path's variants: one reader or several; read replies sent by the completing
// thread or by reply threads; write payloads in the reader's buffer (large) or copied
// (small). Completions come from another thread, as the initiator's do.
TEST_F(FuseLoopTest, ReaderAndReplyThreadVariantsKeepDataIntact) {
  if (RunCommand("fio --version").exit_code != 0) GTEST_SKIP() << "fio not installed";
  const FuseLoopOptions variants[] = {
      {.max_threads = 1, .reply_threads = 0},
      {.max_threads = 2, .reply_threads = 1, .reply_offload_bytes = 4096},
      {.max_threads = 4, .reply_threads = 2, .reply_offload_bytes = 65536},
  };
  for (const FuseLoopOptions& fl : variants) {
    SCOPED_TRACE(absl::StrFormat("readers %d, reply threads %d from %u bytes", fl.max_threads,
                                 fl.reply_threads, fl.reply_offload_bytes));
    auto memory = NewBackend(64 << 20, 4096);
    AsyncBackend backend(*memory);
    FuseLoopExposure exposure(fl);
    auto dev = exposure.ExposeFuseLoop(backend, {.name = "variant"});
    ASSERT_TRUE(dev.ok()) << dev.status();
    CommandResult fio = RunCommand(
        "fio --name=mixed --filename=" + (*dev)->device_path() +
        " --ioengine=libaio --direct=1 --iodepth=32 --size=48M --rw=randwrite"
        " --bsrange=4k-1m --verify=crc32c --do_verify=1 --verify_fatal=1 --verify_state_save=0");
    EXPECT_EQ(fio.exit_code, 0) << fio.output;
    EXPECT_NE(fio.output.find("err= 0"), std::string::npos) << fio.output;
    // What fio verified through the device is what the backend holds.
    UniqueFd fd(::open((*dev)->device_path().c_str(), O_RDONLY | O_DIRECT | O_CLOEXEC));
    ASSERT_TRUE(fd);
    AlignedBuffer buf(1 << 20);
    for (uint64_t off = 0; off < (48u << 20); off += buf.size) {
      ASSERT_EQ(::pread(fd.get(), buf.p, buf.size, off), static_cast<ssize_t>(buf.size));
      ASSERT_EQ(std::memcmp(buf.p, memory->data() + off, buf.size), 0) << "offset " << off;
    }
    fd.Reset();
    FuseLoopHandles h = (*dev)->handles();
    ASSERT_TRUE((*dev)->Detach().ok());
    ExpectNothingLeft(h);
  }
}

TEST_F(FuseLoopTest, DestructorTearsDownWithoutDetach) {
  auto backend = NewBackend(16 << 20, 512);
  FuseLoopHandles h;
  {
    auto dev = Expose(*backend);
    ASSERT_NE(dev, nullptr);
    h = dev->handles();
  }
  ExpectNothingLeft(h);
}

TEST_F(FuseLoopTest, ReadOnly) {
  auto backend = NewBackend(16 << 20, 4096);
  auto dev = exposure_.ExposeFuseLoop(*backend, {.name = "ro", .read_only = true});
  ASSERT_TRUE(dev.ok()) << dev.status();
  CommandResult ro = RunCommand("blockdev --getro " + (*dev)->device_path());
  EXPECT_EQ(ro.output, "1\n");
  AlignedBuffer buf(4096);
  std::memset(buf.p, 1, 4096);
  UniqueFd fd(::open((*dev)->device_path().c_str(), O_RDWR | O_DIRECT | O_CLOEXEC));
  if (fd) {
    EXPECT_LT(::pwrite(fd.get(), buf.p, 4096, 0), 0) << "wrote to a read-only device";
  }
  EXPECT_EQ(backend->writes(), 0u);
  fd.Reset(::open((*dev)->device_path().c_str(), O_RDONLY | O_DIRECT | O_CLOEXEC));
  ASSERT_TRUE(fd);
  EXPECT_EQ(::pread(fd.get(), buf.p, 4096, 0), 4096);
  fd.Reset();
  FuseLoopHandles h = (*dev)->handles();
  ASSERT_TRUE((*dev)->Detach().ok());
  ExpectNothingLeft(h);
}

TEST_F(FuseLoopTest, RejectsUnusableBlockSize) {
  auto backend = NewBackend(16 << 20, 8192);
  auto dev = exposure_.Expose(*backend, {.name = "bad"});
  EXPECT_EQ(dev.status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace iser::node
