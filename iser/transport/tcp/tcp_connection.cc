#include "iser/transport/tcp/tcp_connection.h"

#include <algorithm>

#include "iser/target/connection.h"
#include "iser/target/task.h"

namespace iser::transport {

TcpConnection::TcpConnection(EventLoop* loop, UniqueFd fd, std::string peer, std::string local,
                             std::vector<uint8_t> preread)
    : stream_(loop, std::move(fd), std::move(preread)),
      peer_(std::move(peer)),
      local_(std::move(local)) {}

void TcpConnection::SetEvents(target::TransportEvents* events) {
  PduStream::Callbacks cb;
  cb.check_header = [events](const pdu::Bhs& bhs) { return events->CheckHeader(bhs); };
  cb.place_data = [this, events](const pdu::Bhs& bhs) {
    if (bhs.opcode() == pdu::Opcode::kScsiCommand) return PlaceImmediateData(bhs);
    unplaced_data_buffer_ = IoBuffer();
    std::span<uint8_t> in_task = events->PlaceData(bhs);
    if (!in_task.empty() || bhs.opcode() != pdu::Opcode::kDataOut) return in_task;
    return PlaceUnplacedDataOut(bhs);
  };
  cb.on_pdu = [this, events](pdu::ReceivedPdu pdu) {
    if (pdu.placed && pdu.bhs.opcode() == pdu::Opcode::kScsiCommand) {
      ++immediate_buffers_handed_over_;
      events->OnPduReceived(std::move(pdu), std::move(immediate_buffer_));
      return;
    }
    if (pdu.placed && pdu.bhs.opcode() == pdu::Opcode::kDataOut && !unplaced_data_buffer_.empty()) {
      // In our buffer, not in the task's: the core copies it (placed means "in the task").
      pdu.placed = false;
      ++unplaced_data_handed_over_;
      events->OnPduReceived(std::move(pdu), std::move(unplaced_data_buffer_));
      return;
    }
    events->OnPduReceived(std::move(pdu));
  };
  cb.on_closed = [events](const absl::Status& why) { events->OnTransportClosed(why); };
  if (absl::Status s = stream_.Start(std::move(cb)); !s.ok()) stream_.Close(s);
}

void TcpConnection::ApplyParams(const login::OperationalParams& params) {
  stream_.SetDigests(params.header_digest, params.data_digest);
  stream_.SetMaxReceiveSegment(params.target_max_recv_dsl);
  max_outstanding_r2t_ = std::max<uint32_t>(1, params.max_outstanding_r2t);
  first_burst_length_ = params.first_burst_length;
}

std::span<uint8_t> TcpConnection::PlaceImmediateData(const pdu::Bhs& bhs) {
  // Without this the segment would go to a fresh heap vector per command, be copied into
  // the task buffer and freed. With several connections per session two such vectors are
  // live at once (one being received on each socket, and a command held for CmdSN order
  // keeps its own), they are freed out of allocation order, and glibc keeps trimming and
  // regrowing the top of its heap: a brk and a page fault per fresh page on every few
  // commands, which halved MC/S write throughput. A pooled buffer that becomes the task
  // buffer costs neither the allocation nor the copy.
  uint32_t dsl = bhs.data_segment_length();
  if (first_burst_length_ == 0 || dsl == 0) return {};
  // Room for the whole write when it is no more than may arrive unsolicited, so the task
  // adopts this buffer; a larger EDTL (untrusted until the core checks it) is not
  // allocated here, and the core copies the immediate data into a task buffer of its own.
  uint32_t edtl = bhs.u32(pdu::field::kEdtl);
  size_t size = edtl > dsl && edtl <= first_burst_length_ ? edtl : dsl;
  immediate_buffer_ = IoBuffer::Allocate(size);
  return immediate_buffer_.span().first(dsl);
}

std::span<uint8_t> TcpConnection::PlaceUnplacedDataOut(const pdu::Bhs& bhs) {
  // A Data-Out the core has no task span for: unsolicited data of a command held for
  // CmdSN order (MC/S), or data for an unknown task. Left to the stream it would go to a
  // fresh heap vector, with the out-of-order frees across connections that made glibc
  // trim and regrow its heap (see PlaceImmediateData); a pooled buffer costs neither.
  // The stream has checked the length against MaxRecvDataSegmentLength already.
  uint32_t dsl = bhs.data_segment_length();
  if (dsl == 0) return {};
  unplaced_data_buffer_ = IoBuffer::Allocate(dsl);
  return unplaced_data_buffer_.span().first(dsl);
}

bool TcpConnection::QueueDataIn(target::Task& task, bool with_status) {
  for (target::OutgoingPdu& p : task.conn->BuildDataIn(task, with_status)) SendPdu(std::move(p));
  return with_status;
}

void TcpConnection::GetDataOut(target::Task& task) {
  while (task.bursts.size() < max_outstanding_r2t_) {
    std::optional<target::OutgoingPdu> r2t = task.conn->BuildNextR2t(task);
    if (!r2t) break;
    SendPdu(std::move(*r2t));
  }
}

}  // namespace iser::transport
