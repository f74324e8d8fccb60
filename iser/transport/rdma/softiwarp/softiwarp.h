// The software iWARP provider: the verbs-shaped API (iser/transport/rdma/verbs.h,
// cm.h) implemented in user space over TCP (RDMAP/DDP/MPA, RFC 5040/5041/5044/6581).
//
//   auto dev = softiwarp::OpenDevice(loop);              // ibv_open_device
//   auto ch = softiwarp::CreateEventChannel(dev.get());  // rdma_create_event_channel
//
// Everything belongs to `loop` and must be used on its thread.
#ifndef ISER_TRANSPORT_RDMA_SOFTIWARP_SOFTIWARP_H_
#define ISER_TRANSPORT_RDMA_SOFTIWARP_SOFTIWARP_H_

#include <memory>

#include "iser/base/event_loop.h"
#include "iser/transport/rdma/cm.h"
#include "iser/transport/rdma/softiwarp/device.h"
#include "iser/transport/rdma/verbs.h"

namespace iser::softiwarp {

std::unique_ptr<SoftDevice> OpenDevice(EventLoop* loop, SoftIwarpOptions options = {});
absl::StatusOr<std::unique_ptr<rdma::CmEventChannel>> CreateEventChannel(SoftDevice* device);

}  // namespace iser::softiwarp

#endif  // ISER_TRANSPORT_RDMA_SOFTIWARP_SOFTIWARP_H_
