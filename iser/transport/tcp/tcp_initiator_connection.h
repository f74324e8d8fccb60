// iSCSI over TCP for the initiator: the InitiatorTransport for a TCP socket.
//
// Receive: a staging buffer feeds the resumable PduReader; Data-In segments are placed
// straight into the command's read buffer (the session's PlaceData) and large ones are
// recv()'d there directly. Send: a FIFO of PDUs written with writev; Data-Out payload is
// referenced in the caller's write buffer, never copied; digests are added here.
#ifndef ISER_TRANSPORT_TCP_TCP_INITIATOR_CONNECTION_H_
#define ISER_TRANSPORT_TCP_TCP_INITIATOR_CONNECTION_H_

#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "iser/base/event_loop.h"
#include "iser/base/unique_fd.h"
#include "iser/initiator/initiator_transport.h"
#include "iser/pdu/pdu_reader.h"
#include "iser/transport/tcp/pdu_stream.h"

namespace iser::transport {

class TcpInitiatorConnection final : public initiator::InitiatorTransport {
 public:
  // Connects to `portal` without blocking the loop; `done` runs on the loop thread once.
  static void Connect(EventLoop* loop, const std::string& portal, absl::Duration timeout,
                      initiator::TransportConnectCallback done);

  TcpInitiatorConnection(EventLoop* loop, UniqueFd fd, std::string peer);
  ~TcpInitiatorConnection() override;

  initiator::InitiatorTransportKind kind() const override {
    return initiator::InitiatorTransportKind::kTcp;
  }
  std::string peer_address() const override { return peer_; }
  void SetEvents(initiator::InitiatorTransportEvents* events) override;
  void ApplyParams(const login::OperationalParams& params) override;
  void SendPdu(initiator::OutgoingPdu pdu) override;
  void SendCommand(initiator::OutgoingPdu cmd, initiator::TaskIo& io) override;
  void SendDataOut(initiator::TaskIo& io, uint32_t ttt, uint32_t offset, uint32_t length,
                   uint32_t exp_stat_sn) override;
  void Abort(const absl::Status& why) override;

  uint64_t bytes_received() const { return stream_.bytes_received(); }
  uint64_t bytes_sent() const { return stream_.bytes_sent(); }

 private:
  EventLoop* loop_;
  PduStream stream_;
  std::string peer_;
  initiator::InitiatorTransportEvents* events_ = nullptr;
  bool started_ = false;
  uint32_t max_send_segment_ = 8192;
  // Deferred close reports check this: the session may free us first.
  std::shared_ptr<int> life_ = std::make_shared<int>(0);
};

// The TransportFactory for SessionConfig::transport_factory.
initiator::TransportFactory TcpTransportFactory();

}  // namespace iser::transport

#endif  // ISER_TRANSPORT_TCP_TCP_INITIATOR_CONNECTION_H_
