// The verbs-shaped RDMA seam: devices, protection domains, memory regions, completion
// queues and reliable-connected queue pairs.
//
// iSER code is written once against these interfaces; the software iWARP backend
// (softiwarp/) and a libibverbs backend implement them. Each class names the ibv_*
// object and each method the ibv_* call it maps onto, one to one.
//
// Threading: objects of one backend instance belong to one event loop (or, for verbs,
// to whoever owns the ibv_context) and are used from that thread only.
// Lifetime: as with verbs, children must be destroyed before their parents (QP before
// its CQs and PD, MR before its PD, CQ before its completion channel). Memory under a
// registered region must stay valid until the region is destroyed.
#ifndef ISER_TRANSPORT_RDMA_VERBS_H_
#define ISER_TRANSPORT_RDMA_VERBS_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>

#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "iser/base/event_loop.h"
#include "iser/transport/rdma/rdma_types.h"

namespace iser::rdma {

class ProtectionDomain;

// ibv_mr. lkey and rkey are both the iWARP STag here; on IB they may differ.
class MemoryRegion {
 public:
  virtual ~MemoryRegion() = default;  // ibv_dereg_mr
  virtual void* addr() const = 0;
  virtual size_t length() const = 0;
  virtual uint32_t lkey() const = 0;
  virtual uint32_t rkey() const = 0;
  virtual uint32_t access() const = 0;
  virtual ProtectionDomain* pd() const = 0;
};

// ibv_pd.
class ProtectionDomain {
 public:
  virtual ~ProtectionDomain() = default;  // ibv_dealloc_pd
  // ibv_reg_mr(pd, addr, length, access). `access` is a mask of Access.
  virtual absl::StatusOr<std::unique_ptr<MemoryRegion>> RegisterMemory(void* addr, size_t length,
                                                                       uint32_t access) = 0;
};

// ibv_comp_channel. Its fd() is pollable (EPOLLIN) and belongs in an event loop: it
// becomes readable when an armed CQ gets a completion.
class CompletionChannel {
 public:
  virtual ~CompletionChannel() = default;  // ibv_destroy_comp_channel
  virtual int fd() const = 0;
  // ibv_get_cq_event + ibv_ack_cq_events(cq, 1): the CQ that fired, or Unavailable if
  // none is pending (the fd is non-blocking). Re-arm with RequestNotify afterwards.
  virtual absl::StatusOr<CompletionQueue*> GetEvent() = 0;

  // Runs `on_event` on `loop`'s thread when events may be pending; drain them with
  // GetEvent. The default watches fd() for EPOLLIN (what a verbs consumer does with
  // ibv_comp_channel::fd). A provider that produces completions on that same loop
  // overrides it to call `on_event` without the fd round trip. One watcher at a time;
  // Unwatch before the loop or the callback's captures go away.
  virtual absl::Status Watch(EventLoop* loop, absl::AnyInvocable<void()> on_event) {
    return loop->AddFd(fd(), EPOLLIN, [cb = std::move(on_event)](uint32_t) mutable { cb(); });
  }
  virtual void Unwatch(EventLoop* loop) { loop->RemoveFd(fd()); }
};

// ibv_cq.
class CompletionQueue {
 public:
  virtual ~CompletionQueue() = default;  // ibv_destroy_cq
  // ibv_poll_cq: fills up to out.size() completions, returns how many.
  virtual int Poll(std::span<WorkCompletion> out) = 0;
  // ibv_req_notify_cq: arm one event on the channel for the next completion (or the
  // next solicited one / any failed one if solicited_only).
  virtual absl::Status RequestNotify(bool solicited_only) = 0;
  virtual void* context() const = 0;  // cq_context given at creation
};

// ibv_qp (IBV_QPT_RC). Created through CmId::CreateQp (rdma_create_qp), which also
// binds it to the connection.
class QueuePair {
 public:
  virtual ~QueuePair() = default;  // rdma_destroy_qp
  // ibv_post_send. Errors in the request itself (bad opcode, too many SGEs, queue full,
  // QP in error) return a Status like verbs' errno; access errors in SGEs are reported
  // as a failed WorkCompletion (kLocProtErr), as hardware does.
  virtual absl::Status PostSend(const SendWr& wr) = 0;
  // ibv_post_recv.
  virtual absl::Status PostRecv(const RecvWr& wr) = 0;
  virtual uint32_t qp_num() const = 0;
  virtual QpState state() const = 0;
  // ibv_modify_qp(IBV_QPS_ERR): flush everything and drop the connection.
  virtual absl::Status MoveToError() = 0;
};

// ibv_context.
class Device {
 public:
  virtual ~Device() = default;                                              // ibv_close_device
  virtual absl::StatusOr<std::unique_ptr<ProtectionDomain>> AllocPd() = 0;  // ibv_alloc_pd
  virtual absl::StatusOr<std::unique_ptr<CompletionChannel>> CreateCompletionChannel() = 0;
  // ibv_create_cq(context, cqe, cq_context, channel, 0). channel may be null.
  virtual absl::StatusOr<std::unique_ptr<CompletionQueue>> CreateCq(int cqe, void* cq_context,
                                                                    CompletionChannel* channel) = 0;
};

}  // namespace iser::rdma

#endif  // ISER_TRANSPORT_RDMA_VERBS_H_
