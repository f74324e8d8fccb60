#include "iser/transport/rdma/softiwarp/device.h"

#include "iser/transport/rdma/softiwarp/cq.h"

namespace iser::softiwarp {

absl::StatusOr<std::unique_ptr<rdma::ProtectionDomain>> SoftDevice::AllocPd() {
  return std::make_unique<SoftPd>(this, next_pd_id_++);
}

absl::StatusOr<std::unique_ptr<rdma::CompletionChannel>> SoftDevice::CreateCompletionChannel() {
  auto ch = SoftCompletionChannel::Create(loop_);
  if (!ch.ok()) return ch.status();
  return std::unique_ptr<rdma::CompletionChannel>(std::move(*ch));
}

absl::StatusOr<std::unique_ptr<rdma::CompletionQueue>> SoftDevice::CreateCq(
    int cqe, void* cq_context, rdma::CompletionChannel* channel) {
  if (cqe <= 0) return absl::InvalidArgumentError("cqe must be positive");
  auto* soft_channel = static_cast<SoftCompletionChannel*>(channel);
  return std::unique_ptr<rdma::CompletionQueue>(new SoftCq(cqe, cq_context, soft_channel));
}

absl::StatusOr<std::unique_ptr<rdma::MemoryRegion>> SoftPd::RegisterMemory(void* addr,
                                                                          size_t length,
                                                                          uint32_t access) {
  if (addr == nullptr && length > 0) return absl::InvalidArgumentError("null address");
  auto a = reinterpret_cast<uint64_t>(addr);
  if (a + length < a) return absl::InvalidArgumentError("region wraps");
  if (access & ~(rdma::kAccessLocalWrite | rdma::kAccessRemoteWrite | rdma::kAccessRemoteRead))
    return absl::InvalidArgumentError("unknown access flag");
  // Verbs: remote write requires local write.
  if ((access & rdma::kAccessRemoteWrite) && !(access & rdma::kAccessLocalWrite))
    return absl::InvalidArgumentError("REMOTE_WRITE requires LOCAL_WRITE");
  uint32_t stag = device_->mrs().Register(id_, a, length, access);
  return std::unique_ptr<rdma::MemoryRegion>(new SoftMr(this, addr, length, access, stag));
}

}  // namespace iser::softiwarp
