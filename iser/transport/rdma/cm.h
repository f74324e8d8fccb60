// Connection management in the shape of librdmacm (RDMA_PS_TCP, reliable connected).
//
//   rdma_create_event_channel -> CmProvider::CreateEventChannel
//   rdma_create_id            -> CmEventChannel::CreateId
//   rdma_bind_addr+rdma_listen-> CmId::Listen
//   rdma_resolve_addr/_route  -> CmId::ResolveAddr / ResolveRoute (events follow)
//   rdma_create_qp            -> CmId::CreateQp
//   rdma_connect / rdma_accept / rdma_reject / rdma_disconnect -> same names
//   rdma_get_cm_event + rdma_ack_cm_event -> CmEventChannel::GetEvent (event is a value)
//
// For a connect request the event carries the new CmId (as librdmacm's event->id);
// the caller owns it. Destroying a CmId drops its queued events.
#ifndef ISER_TRANSPORT_RDMA_CM_H_
#define ISER_TRANSPORT_RDMA_CM_H_

#include <netinet/in.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "iser/transport/rdma/verbs.h"

namespace iser::rdma {

class CmId;

// rdma_cm_event_type (the values of RDMA_CM_EVENT_*).
enum class CmEventType : uint32_t {
  kAddrResolved = 0,
  kAddrError = 1,
  kRouteResolved = 2,
  kRouteError = 3,
  kConnectRequest = 4,
  kConnectResponse = 5,
  kConnectError = 6,
  kUnreachable = 7,
  kRejected = 8,
  kEstablished = 9,
  kDisconnected = 10,
};
std::string_view CmEventTypeName(CmEventType type);

// rdma_conn_param. On iWARP responder_resources is the IRD and initiator_depth the ORD
// carried in the MPA v2 header.
struct ConnParam {
  std::vector<uint8_t> private_data;
  uint8_t responder_resources = 16;  // IRD: inbound RDMA Reads we accept at once
  uint8_t initiator_depth = 16;      // ORD: outbound RDMA Reads we keep outstanding
};

// rdma_cm_event.
struct CmEvent {
  CmEventType type = CmEventType::kConnectError;
  CmId* id = nullptr;                 // the id the event is for (the new one on request)
  std::unique_ptr<CmId> new_id;       // kConnectRequest only: ownership passes to caller
  CmId* listen_id = nullptr;          // kConnectRequest only
  int status = 0;                     // negative errno on errors, as librdmacm
  ConnParam param;                    // private data (ULP part); IRD/ORD of the peer
};

// rdma_cm_id.
class CmId {
 public:
  virtual ~CmId() = default;  // rdma_destroy_id (destroy the QP first)
  virtual absl::Status Listen(const sockaddr_in& addr, int backlog) = 0;
  // Port the id is bound to (for tests that listen on port 0).
  virtual uint16_t local_port() const = 0;
  virtual absl::Status ResolveAddr(const sockaddr_in& dst, absl::Duration timeout) = 0;
  virtual absl::Status ResolveRoute(absl::Duration timeout) = 0;
  // id->verbs: the device the id is bound to (after resolve or on a connect request).
  virtual Device* device() const = 0;
  virtual absl::Status CreateQp(ProtectionDomain* pd, const QpInitAttr& attr) = 0;
  virtual QueuePair* qp() const = 0;
  virtual absl::Status Connect(const ConnParam& param) = 0;
  virtual absl::Status Accept(const ConnParam& param) = 0;
  virtual absl::Status Reject(std::span<const uint8_t> private_data) = 0;
  virtual absl::Status Disconnect() = 0;
  void set_context(void* context) { context_ = context; }
  void* context() const { return context_; }

 private:
  void* context_ = nullptr;
};

// rdma_event_channel. fd() is pollable (EPOLLIN) for an event loop.
class CmEventChannel {
 public:
  virtual ~CmEventChannel() = default;  // rdma_destroy_event_channel
  virtual int fd() const = 0;
  // rdma_create_id(channel, &id, context, RDMA_PS_TCP).
  virtual absl::StatusOr<std::unique_ptr<CmId>> CreateId(void* context) = 0;
  // Next event, or Unavailable if none is queued.
  virtual absl::StatusOr<CmEvent> GetEvent() = 0;
};

}  // namespace iser::rdma

#endif  // ISER_TRANSPORT_RDMA_CM_H_
