// iSCSI over TCP (RFC 7143) for the target: the ConnectionTransport over a PduStream.
//
// Read data goes out as Data-In PDUs pointing into the task buffer (no copy), write data
// is solicited with R2Ts, and Data-Out segments land straight in the task buffer. The
// immediate data of a SCSI Command is received into a pooled buffer that is handed to
// the connection core with the PDU and becomes the task buffer.
#ifndef ISER_TRANSPORT_TCP_TCP_CONNECTION_H_
#define ISER_TRANSPORT_TCP_TCP_CONNECTION_H_

#include <span>
#include <string>
#include <vector>

#include "iser/base/event_loop.h"
#include "iser/base/io_buffer.h"
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
  // SCSI Commands whose immediate data arrived in a buffer handed to the core with them.
  uint64_t immediate_buffers_handed_over() const { return immediate_buffers_handed_over_; }
  // Data-Out PDUs that had no place in a task (e.g. unsolicited data of a command held
  // for CmdSN order) and arrived in a pooled buffer handed to the core with them.
  uint64_t unplaced_data_buffers_handed_over() const { return unplaced_data_handed_over_; }

 private:
  std::span<uint8_t> PlaceImmediateData(const pdu::Bhs& bhs);
  std::span<uint8_t> PlaceUnplacedDataOut(const pdu::Bhs& bhs);

  PduStream stream_;
  std::string peer_;
  std::string local_;
  uint32_t max_outstanding_r2t_ = 1;
  // Zero until full feature phase: no SCSI Command is expected before it.
  uint32_t first_burst_length_ = 0;
  // The buffer the data segment of the SCSI Command being received goes to (the stream
  // receives one PDU at a time, so one is enough); handed over when the PDU completes.
  IoBuffer immediate_buffer_;
  uint64_t immediate_buffers_handed_over_ = 0;
  // Same for a Data-Out the core had no task buffer span for.
  IoBuffer unplaced_data_buffer_;
  uint64_t unplaced_data_handed_over_ = 0;
};

}  // namespace iser::transport

#endif  // ISER_TRANSPORT_TCP_TCP_CONNECTION_H_
