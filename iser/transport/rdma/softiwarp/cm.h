// librdmacm-shaped connection management for software iWARP: TCP listen/connect plus
// the MPA request/reply exchange, then the socket is handed to the QP.
#ifndef ISER_TRANSPORT_RDMA_SOFTIWARP_CM_H_
#define ISER_TRANSPORT_RDMA_SOFTIWARP_CM_H_

#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "iser/base/event_loop.h"
#include "iser/base/unique_fd.h"
#include "iser/transport/rdma/cm.h"
#include "iser/transport/rdma/softiwarp/device.h"
#include "iser/transport/rdma/softiwarp/mpa_handshake.h"
#include "iser/transport/rdma/softiwarp/qp.h"

namespace iser::softiwarp {

class SoftCmId;

class SoftCmEventChannel final : public rdma::CmEventChannel {
 public:
  static absl::StatusOr<std::unique_ptr<SoftCmEventChannel>> Create(SoftDevice* device);
  int fd() const override { return fd_.get(); }
  absl::StatusOr<std::unique_ptr<rdma::CmId>> CreateId(void* context) override;
  absl::StatusOr<rdma::CmEvent> GetEvent() override;

  void Push(rdma::CmEvent event);
  void Forget(rdma::CmId* id);
  SoftDevice* device() const { return device_; }

 private:
  SoftCmEventChannel(SoftDevice* device, UniqueFd fd) : device_(device), fd_(std::move(fd)) {}
  void DrainFd();
  SoftDevice* device_;
  UniqueFd fd_;
  std::deque<rdma::CmEvent> events_;
};

class SoftCmId final : public rdma::CmId {
 public:
  SoftCmId(SoftCmEventChannel* channel, void* context);
  ~SoftCmId() override;

  absl::Status Listen(const sockaddr_in& addr, int backlog) override;
  uint16_t local_port() const override { return local_port_; }
  absl::Status ResolveAddr(const sockaddr_in& dst, absl::Duration timeout) override;
  absl::Status ResolveRoute(absl::Duration timeout) override;
  rdma::Device* device() const override { return device_; }
  absl::Status CreateQp(rdma::ProtectionDomain* pd, const rdma::QpInitAttr& attr) override;
  rdma::QueuePair* qp() const override { return qp_.get(); }
  absl::Status Connect(const rdma::ConnParam& param) override;
  absl::Status Accept(const rdma::ConnParam& param) override;
  absl::Status Reject(std::span<const uint8_t> private_data) override;
  absl::Status Disconnect() override;

  // Port sharing (no librdmacm counterpart): a listening id without a socket of its
  // own, fed TCP connections that someone else accepted on a port it shares with
  // iSCSI/TCP. `preread` holds bytes already taken off the socket (the start of the MPA
  // Request frame); a sniffer that peeks with MSG_PEEK passes none. The connection then
  // goes through the usual passive handshake and surfaces as kConnectRequest.
  absl::Status ListenOnAdoptedSockets();
  absl::Status AdoptAcceptedSocket(UniqueFd fd, std::vector<uint8_t> preread = {});

  SoftQp* soft_qp() const { return qp_.get(); }
  // "ip:port" of the peer and of our end (passive ids, from the accepted socket).
  const std::string& peer_address() const { return peer_address_; }
  const std::string& local_address() const { return local_address_; }

 private:
  enum class State {
    kIdle,
    kListening,
    kAddrResolved,
    kRouteResolved,
    kTcpConnecting,
    kAwaitReply,
    kAwaitRequest,
    kRequestDelivered,
    kSendingReply,
    kEstablished,
    kClosed,
  };

  // Passive side: a connection accepted on `listener`.
  void StartPassive(SoftCmId* listener, UniqueFd fd, std::vector<uint8_t> preread = {});
  void OnListenReadable();
  void OnHandshakeEvent(uint32_t events);
  void OnConnected();
  void OnReplyFrame();
  void OnRequestFrame();
  void QueueFrame(std::vector<uint8_t> bytes);
  bool FlushFrame();  // true when all queued bytes are written
  void EnterEstablished(const QpConnParams& params);
  void Fail(rdma::CmEventType type, int status, bool to_listener);
  void Emit(rdma::CmEventType type, int status, rdma::ConnParam param = {});
  void ArmTimer(absl::Duration d);
  void CancelTimer();
  void DropFd();
  uint32_t Mulpdu() const;
  void PromoteChild(SoftCmId* child);
  void ForgetChild(SoftCmId* child);

  SoftCmEventChannel* channel_;
  SoftDevice* device_;
  EventLoop* loop_;
  State state_ = State::kIdle;
  UniqueFd fd_;
  bool fd_registered_ = false;
  uint16_t local_port_ = 0;
  sockaddr_in dst_{};
  std::unique_ptr<SoftQp> qp_;
  std::optional<MpaFrameReader> reader_;
  std::vector<uint8_t> preread_;  // passive: bytes of the Request read before adoption
  size_t preread_pos_ = 0;
  std::string peer_address_;
  std::string local_address_;
  std::vector<uint8_t> out_;
  size_t out_sent_ = 0;
  MpaFrame request_;  // what we sent (initiator) or received (responder)
  MpaNegotiated negotiated_;
  rdma::ConnParam local_param_;
  bool close_after_flush_ = false;
  std::optional<EventLoop::TimerId> timer_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);

  SoftCmId* listener_ = nullptr;                    // passive child while pending
  std::vector<std::unique_ptr<SoftCmId>> pending_;  // listener: children in handshake
};

}  // namespace iser::softiwarp

#endif  // ISER_TRANSPORT_RDMA_SOFTIWARP_CM_H_
