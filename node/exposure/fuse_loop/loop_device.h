// RAII owner of one configured loop device (/dev/loopN) over an open file.
#ifndef NODE_EXPOSURE_FUSE_LOOP_LOOP_DEVICE_H_
#define NODE_EXPOSURE_FUSE_LOOP_LOOP_DEVICE_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "iser/base/unique_fd.h"

namespace iser::node {

struct LoopOptions {
  uint32_t logical_block_size = 512;
  bool direct_io = true;
  bool read_only = false;
  std::string file_name;  // lo_file_name, shown by `losetup -l`
};

class LoopDevice {
 public:
  // Finds a free loop device and binds `backing_fd` to it with LOOP_CONFIGURE
  // (autoclear, direct I/O, the given logical block size). The loop device takes its
  // own reference on the file; the caller may close `backing_fd` afterwards.
  static absl::StatusOr<std::unique_ptr<LoopDevice>> Attach(int backing_fd,
                                                            const LoopOptions& options);
  // Detaches (LOOP_CLR_FD) if Detach() was not called.
  ~LoopDevice();
  LoopDevice(const LoopDevice&) = delete;
  LoopDevice& operator=(const LoopDevice&) = delete;

  const std::string& path() const { return path_; }
  int index() const { return index_; }
  // The open /dev/loopN descriptor (kernel-facing; passable to another process).
  int fd() const { return fd_.get(); }
  // Whether the kernel really does direct I/O to the backing file (sysfs loop/dio).
  bool direct_io_active() const;

  // True while something other than us holds the device exclusively (a mount).
  bool Busy() const;
  // fsync()s the device (a REQ_OP_FLUSH down to the backing file).
  absl::Status Sync() const;
  // LOOP_CLR_FD, closes our descriptor and waits (up to `timeout_ms`) until the kernel
  // has let go of the backing file.
  absl::Status Detach(int timeout_ms = 5000);

 private:
  LoopDevice(UniqueFd fd, int index) : fd_(std::move(fd)), index_(index) {
    path_ = "/dev/loop" + std::to_string(index);
  }

  UniqueFd fd_;
  int index_;
  std::string path_;
  std::string backing_file_;  // as sysfs showed it after LOOP_CONFIGURE
};

}  // namespace iser::node

#endif  // NODE_EXPOSURE_FUSE_LOOP_LOOP_DEVICE_H_
