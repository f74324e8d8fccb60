// The exposure seam, upper half: turn a BlockBackend into a Linux block device.
//
//   std::unique_ptr<Exposure> exposure = NewFuseLoopExposure();
//   ISER_ASSIGN_OR_RETURN(auto dev, exposure->Expose(lun, {.name = "pvc-123"}));
//   Mount(dev->device_path(), ...);
//   ...
//   RETURN_IF_ERROR(dev->Detach());   // flushes, removes /dev/..., leaves nothing behind
//
// Backends: fuse_loop (libfuse3 file + loop device; runs everywhere with /dev/fuse and
// loop devices), nbd (kernel NBD over generic netlink; needs the nbd module).
#ifndef NODE_EXPOSURE_EXPOSURE_H_
#define NODE_EXPOSURE_EXPOSURE_H_

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "node/exposure/block_backend.h"

namespace iser::node {

struct ExposeOptions {
  // Label shown in logs, the FUSE fsname and the loop device's lo_file_name.
  std::string name = "lun";
  bool read_only = false;
};

// A LUN visible as a kernel block device. Owns every kernel object it created; the
// destructor tears them down (calling Detach() if the caller did not).
class ExposedDevice {
 public:
  virtual ~ExposedDevice() = default;

  // "/dev/loop3", "/dev/nbd0", ...
  virtual const std::string& device_path() const = 0;

  // Flushes the device and the backend, then removes the block device and everything
  // behind it. FailedPrecondition (and nothing torn down) if the device is still in use
  // (mounted or opened exclusively). Must not be called on the thread that completes
  // the backend's I/O (it waits for that I/O). Idempotent.
  virtual absl::Status Detach() = 0;
};

class Exposure {
 public:
  virtual ~Exposure() = default;

  // `backend` must outlive the returned device.
  virtual absl::StatusOr<std::unique_ptr<ExposedDevice>> Expose(BlockBackend& backend,
                                                                const ExposeOptions& options) = 0;
};

// errno for a failed backend call as a block layer sees it (EIO unless more precise).
int StatusToErrno(const absl::Status& status);

// Runs `start(done)` and blocks until `done` runs (on any thread). For control-plane
// waits (Detach's final flush), never on the data path.
absl::Status WaitForCompletion(absl::AnyInvocable<void(IoCompletion)> start);

}  // namespace iser::node

#endif  // NODE_EXPOSURE_EXPOSURE_H_
