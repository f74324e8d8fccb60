// iSCSI over TCP (RFC 7143): the ConnectionTransport for a TCP socket.
//
// Receive: a staging buffer feeds the resumable PduReader; large data segments are
// received straight into the task buffer the core chose (PlaceData). Send: a FIFO of
// PDUs written with writev, header/data digests added here, one flush per loop batch.
#ifndef ISER_TRANSPORT_TCP_TCP_CONNECTION_H_
#define ISER_TRANSPORT_TCP_TCP_CONNECTION_H_

#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "iser/base/event_loop.h"
#include "iser/base/unique_fd.h"
#include "iser/pdu/pdu_reader.h"
#include "iser/target/connection_transport.h"

namespace iser::transport {

class TcpConnection final : public target::ConnectionTransport {
 public:
  // `preread`: bytes already taken off the socket (by a protocol sniffer) that belong
  // at the start of the stream.
  TcpConnection(EventLoop* loop, UniqueFd fd, std::string peer, std::string local,
                std::vector<uint8_t> preread = {});
  ~TcpConnection() override;

  target::TransportKind kind() const override { return target::TransportKind::kTcp; }
  std::string peer_address() const override { return peer_; }
  std::string local_address() const override { return local_; }
  void SetEvents(target::TransportEvents* events) override;
  void ApplyParams(const login::OperationalParams& params) override;
  void SendPdu(target::OutgoingPdu pdu) override;
  bool QueueDataIn(target::Task& task, bool with_status) override;
  void GetDataOut(target::Task& task) override;
  void CloseAfterFlush() override;
  void Abort() override;

  // Counters for tests and status.
  uint64_t bytes_received() const { return bytes_received_; }
  uint64_t bytes_sent() const { return bytes_sent_; }

 private:
  struct Wire {
    target::OutgoingPdu pdu;
    uint8_t header_digest[4];
    bool has_header_digest = false;  // digests apply from the PDU after login completes
    uint8_t trailer[8];              // pad (0-3) + data digest (4)
    size_t trailer_len = 0;
    size_t total = 0;  // bytes on the wire
  };

  void OnEvents(uint32_t events);
  void HandleReadable();
  bool FeedStaging();  // false: stop reading (closed)
  void Deliver();
  void ScheduleFlush();
  void Flush();
  void Fail(const absl::Status& why);

  EventLoop* loop_;
  UniqueFd fd_;
  std::string peer_;
  std::string local_;
  target::TransportEvents* events_ = nullptr;

  pdu::PduReader reader_;
  std::vector<uint8_t> staging_;
  size_t staging_begin_ = 0;
  size_t staging_end_ = 0;

  bool header_digest_ = false;
  bool data_digest_ = false;
  uint32_t max_outstanding_r2t_ = 1;

  std::deque<Wire> send_queue_;
  size_t front_sent_ = 0;  // bytes of send_queue_.front() already written
  bool flush_scheduled_ = false;
  bool want_writable_ = false;
  bool close_after_flush_ = false;
  bool closed_ = false;

  uint64_t bytes_received_ = 0;
  uint64_t bytes_sent_ = 0;
};

}  // namespace iser::transport

#endif  // ISER_TRANSPORT_TCP_TCP_CONNECTION_H_
