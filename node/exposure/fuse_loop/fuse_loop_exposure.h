// fuse_loop: a LUN as /dev/loopN through a one-file FUSE filesystem served in-process.
//
//   kernel: fio/ext4 -> /dev/loopN (direct I/O, LUN block size)
//        -> FUSE file <tmpdir>/lun (FOPEN_DIRECT_IO, async DIO)
//        -> /dev/fuse -> reader threads (this library, libfuse lowlevel) -> BlockBackend
//
// Requests are answered asynchronously: a reader thread submits to the backend and
// returns to /dev/fuse; the backend's completion sends the reply (fuse_reply_* is
// thread-safe), large read replies through reply threads (see FuseLoopOptions). So the
// queue depth the kernel has in flight (max_background, 256) reaches the backend, not
// just one request per thread. Large write payloads are not copied in user space: the
// buffer a request was read into is handed to the backend whole and the reader takes a
// fresh one.
//
// Mapping: read/write -> Read/Write; fsync (REQ_OP_FLUSH on the loop device) -> Flush;
// fallocate(PUNCH_HOLE) (discard, and write-zeroes without NOUNMAP) -> Discard, followed
// by writing zeroes when the backend does not guarantee that discarded blocks read as
// zeroes; fallocate(ZERO_RANGE) -> Write of zeroes. I/O must be aligned to the LUN
// block size (the loop device guarantees that); unaligned writes fail with EINVAL.
//
// Needs root (mount(2) of FUSE, loop-control) and /dev/fuse.
#ifndef NODE_EXPOSURE_FUSE_LOOP_FUSE_LOOP_EXPOSURE_H_
#define NODE_EXPOSURE_FUSE_LOOP_FUSE_LOOP_EXPOSURE_H_

#include <memory>
#include <string>

#include "node/exposure/exposure.h"

namespace iser::node {

struct FuseLoopOptions {
  // Parent of the private (0700) per-device mount directory.
  std::string mount_parent = "/tmp";
  // Threads reading requests from /dev/fuse. Requests are answered asynchronously, so a
  // reader is busy only while the kernel copies a request (write payload included) into
  // it: a few suffice for any queue depth. More only help while fallocate(ZERO_RANGE or
  // PUNCH_HOLE without LBPRZ) waits for its writes on a reader.
  int max_threads = 4;
  // Threads that send read replies of reply_offload_bytes or more. Writing a reply to
  // /dev/fuse copies the data into the requester's pages and completes the loop device's
  // request; done on the backend's completion thread (the initiator's single event loop)
  // that copy would be serialised with the socket receive copy. 0: reply inline.
  int reply_threads = 2;
  size_t reply_offload_bytes = 32 * 1024;
};

// The descriptors that keep a fuse_loop attachment alive in the kernel, owned by the
// FuseLoopDevice (closed by Detach()/destruction). They can be handed to a new process
// with iser/base/fd_passing.h (SCM_RIGHTS); a later issue does that so the device
// survives a node-plugin restart:
//  - fuse_fd: the /dev/fuse connection; whoever reads it serves the file behind the
//    loop device (requests in flight at hand-off are re-read by the successor only if
//    the kernel re-queues them; a hand-off must drain first).
//  - loop_fd: the open /dev/loopN; the loop device is autoclear, so it disappears when
//    its last opener (this fd, or a mount) goes away.
struct FuseLoopHandles {
  int fuse_fd = -1;
  int loop_fd = -1;
  std::string mount_dir;    // where the FUSE filesystem is mounted
  std::string file_path;    // mount_dir + "/lun", the loop device's backing file
  std::string device_path;  // /dev/loopN
};

class FuseLoopDevice : public ExposedDevice {
 public:
  // Which descriptors/paths make up this attachment (see FuseLoopHandles).
  virtual FuseLoopHandles handles() const = 0;
  // Whether the loop driver does direct I/O to the FUSE file (it should).
  virtual bool direct_io_active() const = 0;
};

class FuseLoopExposure : public Exposure {
 public:
  explicit FuseLoopExposure(FuseLoopOptions options = {}) : options_(std::move(options)) {}

  absl::StatusOr<std::unique_ptr<ExposedDevice>> Expose(BlockBackend& backend,
                                                        const ExposeOptions& options) override;
  // Same, with the concrete type (for handles()).
  absl::StatusOr<std::unique_ptr<FuseLoopDevice>> ExposeFuseLoop(BlockBackend& backend,
                                                                 const ExposeOptions& options);

 private:
  FuseLoopOptions options_;
};

}  // namespace iser::node

#endif  // NODE_EXPOSURE_FUSE_LOOP_FUSE_LOOP_EXPOSURE_H_
