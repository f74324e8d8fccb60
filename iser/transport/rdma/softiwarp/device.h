// The software iWARP device: protection domains, memory regions (STag table), CQs.
// One device belongs to one event loop; every object made from it is used on that
// loop's thread only.
#ifndef ISER_TRANSPORT_RDMA_SOFTIWARP_DEVICE_H_
#define ISER_TRANSPORT_RDMA_SOFTIWARP_DEVICE_H_

#include <cstdint>
#include <memory>

#include "absl/time/time.h"
#include "iser/base/event_loop.h"
#include "iser/transport/rdma/softiwarp/mpa_wire.h"
#include "iser/transport/rdma/softiwarp/mr_table.h"
#include "iser/transport/rdma/verbs.h"

namespace iser::softiwarp {

struct SoftIwarpOptions {
  // Ask for CRC32c as initiator (RFC 5044 default). As responder CRC is on if either
  // side asks (C=1 in either frame), so siw peers that send C=0 interoperate.
  bool crc = true;
  // MPA v2 enhanced connection setup with peer-to-peer RTR (RFC 6581).
  bool enhanced = true;
  bool peer_to_peer = true;
  // 0: derive the MULPDU from the socket's TCP_MAXSEG (RFC 5044 sec 4.5); otherwise
  // force this value (>= 128), e.g. to exercise segmentation in tests.
  uint32_t mulpdu = 0;
  size_t max_private_data = kMpaInteropPrivateData;
  absl::Duration request_timeout = absl::Seconds(5);  // responder waits for Request
  absl::Duration reply_timeout = absl::Seconds(10);   // initiator waits for Reply
};

class SoftDevice final : public rdma::Device {
 public:
  SoftDevice(EventLoop* loop, SoftIwarpOptions options) : loop_(loop), options_(options) {}
  absl::StatusOr<std::unique_ptr<rdma::ProtectionDomain>> AllocPd() override;
  absl::StatusOr<std::unique_ptr<rdma::CompletionChannel>> CreateCompletionChannel() override;
  absl::StatusOr<std::unique_ptr<rdma::CompletionQueue>> CreateCq(
      int cqe, void* cq_context, rdma::CompletionChannel* channel) override;

  EventLoop* loop() const { return loop_; }
  MrTable& mrs() { return mrs_; }
  const SoftIwarpOptions& options() const { return options_; }
  uint32_t NextQpn() { return next_qpn_++; }

 private:
  EventLoop* loop_;
  SoftIwarpOptions options_;
  MrTable mrs_;
  uint32_t next_pd_id_ = 1;
  uint32_t next_qpn_ = 1;
};

class SoftPd final : public rdma::ProtectionDomain {
 public:
  SoftPd(SoftDevice* device, uint32_t id) : device_(device), id_(id) {}
  absl::StatusOr<std::unique_ptr<rdma::MemoryRegion>> RegisterMemory(void* addr, size_t length,
                                                                     uint32_t access) override;
  SoftDevice* device() const { return device_; }
  uint32_t id() const { return id_; }

 private:
  SoftDevice* device_;
  uint32_t id_;
};

class SoftMr final : public rdma::MemoryRegion {
 public:
  SoftMr(SoftPd* pd, void* addr, size_t length, uint32_t access, uint32_t stag)
      : pd_(pd), addr_(addr), length_(length), access_(access), stag_(stag) {}
  ~SoftMr() override { pd_->device()->mrs().Deregister(stag_); }
  void* addr() const override { return addr_; }
  size_t length() const override { return length_; }
  uint32_t lkey() const override { return stag_; }
  uint32_t rkey() const override { return stag_; }
  uint32_t access() const override { return access_; }
  rdma::ProtectionDomain* pd() const override { return pd_; }

 private:
  SoftPd* pd_;
  void* addr_;
  size_t length_;
  uint32_t access_;
  uint32_t stag_;
};

}  // namespace iser::softiwarp

#endif  // ISER_TRANSPORT_RDMA_SOFTIWARP_DEVICE_H_
