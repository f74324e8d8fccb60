#include "node/exposure/fuse_loop/loop_device.h"

#include <fcntl.h>
#include <linux/loop.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>

#include "absl/strings/str_format.h"
#include "iser/base/logging.h"

namespace iser::node {
namespace {

absl::Status Errno(absl::string_view what) {
  return absl::InternalError(absl::StrFormat("%s: %s", what, std::strerror(errno)));
}

std::string ReadSysfs(int index, const char* attr) {
  std::ifstream f(absl::StrFormat("/sys/block/loop%d/loop/%s", index, attr));
  std::string s;
  std::getline(f, s);
  return s;
}

}  // namespace

absl::StatusOr<std::unique_ptr<LoopDevice>> LoopDevice::Attach(int backing_fd,
                                                               const LoopOptions& options) {
  UniqueFd ctl(::open("/dev/loop-control", O_RDWR | O_CLOEXEC));
  if (!ctl) return Errno("open /dev/loop-control");
  // Another process may grab the same free device between GET_FREE and CONFIGURE: retry.
  for (int attempt = 0; attempt < 32; ++attempt) {
    int index = ::ioctl(ctl.get(), LOOP_CTL_GET_FREE);
    if (index < 0) return Errno("LOOP_CTL_GET_FREE");
    std::string path = absl::StrFormat("/dev/loop%d", index);
    UniqueFd fd(::open(path.c_str(), (options.read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC));
    if (!fd) {
      if (errno == ENOENT) {  // device node not created yet by devtmpfs: try again
        ::usleep(1000);
        continue;
      }
      return Errno("open " + path);
    }
    struct loop_config config;
    std::memset(&config, 0, sizeof(config));
    config.fd = static_cast<uint32_t>(backing_fd);
    config.block_size = options.logical_block_size;
    config.info.lo_flags = LO_FLAGS_AUTOCLEAR;
    if (options.direct_io) config.info.lo_flags |= LO_FLAGS_DIRECT_IO;
    if (options.read_only) config.info.lo_flags |= LO_FLAGS_READ_ONLY;
    std::strncpy(reinterpret_cast<char*>(config.info.lo_file_name), options.file_name.c_str(),
                 LO_NAME_SIZE - 1);
    if (::ioctl(fd.get(), LOOP_CONFIGURE, &config) != 0) {
      if (errno == EBUSY) continue;
      return Errno("LOOP_CONFIGURE " + path);
    }
    auto dev = std::unique_ptr<LoopDevice>(new LoopDevice(std::move(fd), index));
    dev->backing_file_ = ReadSysfs(index, "backing_file");
    if (options.direct_io && !dev->direct_io_active()) {
      // Older kernels ignore LO_FLAGS_DIRECT_IO in LOOP_CONFIGURE; ask explicitly.
      if (::ioctl(dev->fd(), LOOP_SET_DIRECT_IO, 1UL) != 0) {
        ISER_LOG(kWarning, "%s: direct I/O unavailable (%s); using buffered I/O", dev->path(),
                 std::strerror(errno));
      }
    }
    return dev;
  }
  return absl::UnavailableError("no free loop device after 32 attempts");
}

LoopDevice::~LoopDevice() {
  if (fd_) {
    absl::Status s = Detach(1000);
    if (!s.ok()) ISER_LOG(kWarning, "%s: %s", path_, s.ToString());
  }
}

bool LoopDevice::direct_io_active() const { return ReadSysfs(index_, "dio") == "1"; }

bool LoopDevice::Busy() const {
  int fd = ::open(path_.c_str(), O_RDONLY | O_EXCL | O_CLOEXEC);
  if (fd < 0) return errno == EBUSY;
  ::close(fd);
  return false;
}

absl::Status LoopDevice::Sync() const {
  if (!fd_) return absl::FailedPreconditionError("loop device detached");
  if (::fsync(fd_.get()) != 0) return Errno("fsync " + path_);
  return absl::OkStatus();
}

absl::Status LoopDevice::Detach(int timeout_ms) {
  if (!fd_) return absl::OkStatus();
  if (::ioctl(fd_.get(), LOOP_CLR_FD) != 0 && errno != ENXIO) {
    return Errno("LOOP_CLR_FD " + path_);
  }
  // With other openers the kernel only marks the device autoclear; the real teardown
  // happens on the last close, which is ours when nobody else has it open.
  fd_.Reset();
  // Done when loopN is unbound, or bound to someone else's file (the index is free for
  // reuse the moment the kernel lets go).
  for (int waited = 0; waited < timeout_ms; waited += 2) {
    std::string now = ReadSysfs(index_, "backing_file");
    if (now.empty() || (!backing_file_.empty() && now != backing_file_)) return absl::OkStatus();
    ::usleep(2000);
  }
  return absl::DeadlineExceededError(path_ + " still bound to its backing file");
}

}  // namespace iser::node
