#include "iser/transport/rdma/softiwarp/softiwarp.h"

#include "iser/transport/rdma/softiwarp/cm.h"

namespace iser::softiwarp {

std::unique_ptr<SoftDevice> OpenDevice(EventLoop* loop, SoftIwarpOptions options) {
  return std::make_unique<SoftDevice>(loop, options);
}

absl::StatusOr<std::unique_ptr<rdma::CmEventChannel>> CreateEventChannel(SoftDevice* device) {
  auto ch = SoftCmEventChannel::Create(device);
  if (!ch.ok()) return ch.status();
  return std::unique_ptr<rdma::CmEventChannel>(std::move(*ch));
}

}  // namespace iser::softiwarp
