// iSCSI over TCP (RFC 7143) for the target: the ConnectionTransport over a PduStream.
//
// Read data goes out as Data-In PDUs pointing into the task buffer (no copy), write data
// is solicited with R2Ts, and Data-Out segments land straight in the task buffer.
#ifndef ISER_TRANSPORT_TCP_TCP_CONNECTION_H_
#define ISER_TRANSPORT_TCP_TCP_CONNECTION_H_

#include <string>
#include <vector>

#include "iser/base/event_loop.h"
#include "iser/base/unique_fd.h"
#include "iser/target/connection_transport.h"
#include "iser/transport/tcp/pdu_stream.h"

namespace iser::transport {

class TcpConnection final : public target::ConnectionTransport {
 public:
  // `preread`: bytes already taken off the socket (by a protocol sniffer) that belong
  // at the start of the stream.
  TcpConnection(EventLoop* loop, UniqueFd fd, std::string peer, std::string local,
                std::vector<uint8_t> preread = {});
  ~TcpConnection() override = default;

  target::TransportKind kind() const override { return target::TransportKind::kTcp; }
  std::string peer_address() const override { return peer_; }
  std::string local_address() const override { return local_; }
  void SetEvents(target::TransportEvents* events) override;
  void ApplyParams(const login::OperationalParams& params) override;
  void SendPdu(target::OutgoingPdu pdu) override { stream_.Send(std::move(pdu)); }
  bool QueueDataIn(target::Task& task, bool with_status) override;
  void GetDataOut(target::Task& task) override;
  void CloseAfterFlush() override { stream_.CloseAfterFlush(); }
  void Abort() override { stream_.Close(absl::AbortedError("closed by target")); }

  uint64_t bytes_received() const { return stream_.bytes_received(); }
  uint64_t bytes_sent() const { return stream_.bytes_sent(); }

 private:
  PduStream stream_;
  std::string peer_;
  std::string local_;
  uint32_t max_outstanding_r2t_ = 1;
};

}  // namespace iser::transport

#endif  // ISER_TRANSPORT_TCP_TCP_CONNECTION_H_
