// nbd: a LUN as /dev/nbdN through the kernel NBD driver, configured over generic
// netlink (NBD_CMD_CONNECT with one end of a socketpair) and served by NbdServer.
// Needs the nbd module (/dev/nbd0); without it Expose() fails with FailedPrecondition
// "no /dev/nbd0: nbd module not loaded".
#ifndef NODE_EXPOSURE_NBD_NBD_EXPOSURE_H_
#define NODE_EXPOSURE_NBD_NBD_EXPOSURE_H_

#include <memory>

#include "node/exposure/exposure.h"

namespace iser::node {

// Ok if this kernel can run NbdExposure, else why not.
absl::Status NbdAvailable();

class NbdExposure : public Exposure {
 public:
  absl::StatusOr<std::unique_ptr<ExposedDevice>> Expose(BlockBackend& backend,
                                                        const ExposeOptions& options) override;
};

}  // namespace iser::node

#endif  // NODE_EXPOSURE_NBD_NBD_EXPOSURE_H_
