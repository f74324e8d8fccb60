// Connection core, SCSI path: commands, write data (immediate, unsolicited, solicited),
// read data and status. The PDU builders here are what the TCP transport sends.
#include <algorithm>
#include <cstring>

#include "absl/strings/str_format.h"
#include "iser/base/logging.h"
#include "iser/target/connection.h"
#include "iser/target/target.h"

namespace iser::target {

using pdu::Bhs;
using pdu::Opcode;

namespace {

size_t CdbLength(uint8_t opcode) {
  switch (opcode >> 5) {
    case 0:
      return 6;
    case 1:
    case 2:
      return 10;
    case 5:
      return 12;
    default:
      return 16;  // group 4, vendor specific, and 0x7f (extended by AHS)
  }
}

// SPC-4: ILLEGAL REQUEST, INVALID FIELD IN CDB.
constexpr uint8_t kIllegalRequest = 0x05;
constexpr uint8_t kAbortedCommand = 0x0b;
// ASC 0x4B qualifiers: DATA PHASE ERROR and DATA OFFSET ERROR.
constexpr uint8_t kDataPhaseError = 0x00;
constexpr uint8_t kDataOffsetError = 0x05;

}  // namespace

void Connection::HandleScsiCommand(pdu::ReceivedPdu pdu, IoBuffer data_buffer) {
  const Bhs& bhs = pdu.bhs;
  const auto& p = session_->params;
  uint32_t itt = bhs.itt();
  if (session_->tasks.contains(itt)) {
    SendReject(bhs, pdu::RejectReason::kTaskInProgress);
    return;
  }
  bool read = bhs.flags() & pdu::kCmdFlagRead;
  bool write = bhs.flags() & pdu::kCmdFlagWrite;
  uint32_t edtl = bhs.u32(pdu::field::kEdtl);
  uint32_t immediate_len = static_cast<uint32_t>(pdu.data.size());
  if (immediate_len > 0 && (!write || !p.immediate_data || immediate_len > p.first_burst_length ||
                            immediate_len > edtl)) {
    SendReject(bhs, pdu::RejectReason::kProtocolError);
    return;
  }

  auto task = std::make_unique<Task>();
  Task* t = task.get();
  t->conn = this;
  t->itt = itt;
  t->cmd_sn = bhs.cmd_sn();
  t->lun_field = bhs.lun_field();
  t->edtl = edtl;
  t->read = read;
  t->write = write && edtl > 0;
  t->immediate = bhs.immediate();
  t->nexus = session_->nexus;
  size_t cdb_len = CdbLength(bhs.cdb()[0]);
  t->cdb.assign(bhs.cdb().begin(), bhs.cdb().begin() + cdb_len);
  // Extended CDB AHS (type 1): bytes past the first 16 (RFC 7143 sec 11.2.2).
  for (size_t off = 0; off + 4 <= pdu.ahs.size();) {
    uint16_t ahs_len = static_cast<uint16_t>(pdu.ahs[off] << 8 | pdu.ahs[off + 1]);
    uint8_t type = pdu.ahs[off + 2];
    size_t end = std::min(pdu.ahs.size(), off + 3 + size_t{ahs_len});
    if (type == 1 && ahs_len > 1 && cdb_len == 16)
      t->cdb.insert(t->cdb.end(), pdu.ahs.begin() + off + 4, pdu.ahs.begin() + end);
    off = pdu::PaddedLength(static_cast<uint32_t>(off + 3 + ahs_len));
  }
  session_->tasks.emplace(itt, std::move(task));

  if (read && write) {
    // Bidirectional commands are not supported by any command we implement.
    SendCheckCondition(itt, scsi::FixedSense(kIllegalRequest, 0x24, 0x00));
    return;
  }
  if (edtl > target_->options().max_io_bytes) {
    SendCheckCondition(itt, scsi::FixedSense(kIllegalRequest, 0x24, 0x00));
    return;
  }
  if (t->write && immediate_len > 0 && pdu.data.data() == data_buffer.data() &&
      edtl <= data_buffer.size()) {
    // The transport's receive buffer starts with the immediate data and can hold all of
    // EDTL: it becomes the task buffer (no copy; later data is placed behind it).
    t->buffer = std::move(data_buffer);
  } else if ((t->read || t->write) && edtl > 0) {
    t->buffer = IoBuffer::Allocate(edtl);
  }

  if (!t->write) {
    ExecuteTask(t);
    return;
  }
  if (immediate_len > 0 && t->buffer.data() != pdu.data.data())
    std::memcpy(t->buffer.data(), pdu.data.data(), immediate_len);
  t->total_received = immediate_len;
  t->unsolicited_received = immediate_len;
  bool no_unsolicited = bhs.final_bit() || p.initial_r2t;
  t->unsolicited_limit = no_unsolicited ? immediate_len : std::min(p.first_burst_length, edtl);
  t->next_r2t_offset = t->unsolicited_limit;
  StartWriteData(t);
}

void Connection::StartWriteData(Task* task) {
  if (task->WriteDataComplete()) {
    ExecuteTask(task);
    return;
  }
  task->state = Task::State::kReceivingData;
  if (task->next_r2t_offset < task->edtl) transport_->GetDataOut(*task);
}

std::span<uint8_t> Connection::PlaceData(const Bhs& bhs) {
  if (bhs.opcode() != Opcode::kDataOut || session_ == nullptr) return {};
  auto it = session_->tasks.find(bhs.itt());
  if (it == session_->tasks.end()) return {};
  Task* t = it->second.get();
  if (t->conn != this || t->state != Task::State::kReceivingData || !t->write) return {};
  uint64_t offset = bhs.u32(pdu::field::kBufferOffset);
  uint64_t len = bhs.data_segment_length();
  if (len == 0 || offset + len > t->edtl) return {};
  return t->buffer.span().subspan(offset, len);
}

void Connection::HandleDataOut(pdu::ReceivedPdu pdu) {
  const Bhs& bhs = pdu.bhs;
  auto it = session_ ? session_->tasks.find(bhs.itt()) : decltype(session_->tasks.end()){};
  if (session_ == nullptr || it == session_->tasks.end()) {
    // Data for a task that was aborted (or never existed): discard it.
    ISER_LOG(kDebug, "conn %llu: Data-Out for unknown ITT 0x%08x dropped",
             static_cast<unsigned long long>(id_), bhs.itt());
    return;
  }
  Task* t = it->second.get();
  if (t->conn != this || t->state != Task::State::kReceivingData || !t->write) return;
  uint32_t offset = bhs.u32(pdu::field::kBufferOffset);
  uint32_t len = static_cast<uint32_t>(pdu.data.size());
  uint32_t data_sn = bhs.u32(pdu::field::kDataSn);
  uint32_t ttt = bhs.ttt();
  bool burst_done = false;
  auto sequence_error = [&](const char* what, uint8_t ascq) {
    // The framing is intact, only this command's data sequence is wrong: fail the
    // command (ABORTED COMMAND, DATA PHASE ERROR family, RFC 7143 sec 11.4.7.2) and keep
    // the connection. Later Data-Out for it is dropped as unknown.
    ISER_LOG(kWarning, "conn %llu: Data-Out sequence error (%s): ITT 0x%08x DataSN %u offset %u",
             static_cast<unsigned long long>(id_), what, bhs.itt(), data_sn, offset);
    SendCheckCondition(bhs.itt(), scsi::FixedSense(kAbortedCommand, 0x4b, ascq));
  };
  if (uint64_t{offset} + len > t->edtl)
    return sequence_error("beyond expected length", kDataOffsetError);
  if (ttt == pdu::kReservedTag) {
    if (data_sn != t->unsolicited_next_data_sn) return sequence_error("DataSN", kDataPhaseError);
    if (offset != t->unsolicited_received || offset + len > t->unsolicited_limit)
      return sequence_error("unsolicited offset", kDataOffsetError);
    t->unsolicited_next_data_sn++;
    t->unsolicited_received += len;
  } else {
    auto b = std::find_if(t->bursts.begin(), t->bursts.end(),
                          [&](const SolicitedBurst& x) { return x.ttt == ttt; });
    if (b == t->bursts.end()) return sequence_error("unknown TTT", kDataPhaseError);
    if (data_sn != b->next_data_sn) return sequence_error("DataSN", kDataPhaseError);
    if (offset != b->offset + b->received || b->received + len > b->length)
      return sequence_error("solicited offset", kDataOffsetError);
    b->next_data_sn++;
    b->received += len;
    if (b->received == b->length) {
      t->bursts.erase(b);
      burst_done = true;
    }
  }
  if (!pdu.placed && len > 0) std::memcpy(t->buffer.data() + offset, pdu.data.data(), len);
  t->total_received += len;
  if (t->WriteDataComplete() && t->bursts.empty()) {
    ExecuteTask(t);
  } else if (burst_done && t->next_r2t_offset < t->edtl) {
    transport_->GetDataOut(*t);
  }
}

void Connection::ExecuteTask(Task* task) {
  scsi::ScsiTask& s = task->scsi;
  s.nexus = &task->nexus;
  s.lun = pdu::DecodeLun(task->lun_field);
  s.cdb = task->cdb;
  s.attribute = static_cast<scsi::TaskAttribute>(0);
  s.expected_transfer_length = task->edtl;
  s.data_out_expected = task->write;
  s.data_in_expected = task->read;
  if (task->write) s.data_out = {task->buffer.data(), std::min(task->total_received, task->edtl)};
  if (task->read) s.data_in = task->buffer.span();
  task->state = Task::State::kExecuting;
  target_->ExecuteScsi(task);
}

void Connection::OnScsiDone(Task* task) {
  if (task->aborted) {
    FinishTask(task);
    return;
  }
  task->state = Task::State::kSendingStatus;
  bool good = task->scsi.status == scsi::ScsiStatus::kGood && task->scsi.sense.empty();
  bool status_sent = false;
  if (task->read && task->edtl > 0 && task->scsi.data_in_length > 0)
    status_sent = transport_->QueueDataIn(*task, good);
  if (!status_sent) SendScsiResponse(task);
  FinishTask(task);
}

void Connection::FinishTask(Task* task) {
  if (session_ != nullptr) session_->tasks.erase(task->itt);  // destroys the task
}

void Connection::FillResidual(const Task& task, Bhs& bhs) const {
  uint32_t edtl = task.edtl;
  uint32_t wanted = task.scsi.cdb_transfer_length;
  uint8_t flags = bhs.flags();
  uint32_t residual = 0;
  if (wanted > edtl) {
    flags |= pdu::kRspFlagOverflow;
    residual = wanted - edtl;
  } else {
    uint32_t moved = task.read ? std::min(task.scsi.data_in_length, edtl) : wanted;
    if (moved < edtl) {
      flags |= pdu::kRspFlagUnderflow;
      residual = edtl - moved;
    }
  }
  bhs.set_flags(flags);
  bhs.set_u32(pdu::field::kResidual, residual);
}

void Connection::SendScsiResponse(Task* task) {
  OutgoingPdu out;
  out.bhs = Bhs::Make(Opcode::kScsiResponse, pdu::kFlagFinal);
  out.bhs.set_byte(2, 0x00);  // command completed at target
  out.bhs.set_byte(3, static_cast<uint8_t>(task->scsi.status));
  out.bhs.set_itt(task->itt);
  FillSequence(out.bhs, true);
  out.bhs.set_u32(pdu::field::kDataSn, task->read ? task->data_sn : task->next_r2t_sn);
  FillResidual(*task, out.bhs);
  if (!task->scsi.sense.empty()) {
    std::vector<uint8_t> data(2 + task->scsi.sense.size());
    data[0] = static_cast<uint8_t>(task->scsi.sense.size() >> 8);
    data[1] = static_cast<uint8_t>(task->scsi.sense.size());
    std::memcpy(data.data() + 2, task->scsi.sense.data(), task->scsi.sense.size());
    out.SetOwnedData(std::move(data));
  }
  transport_->SendPdu(std::move(out));
}

void Connection::SendCheckCondition(uint32_t itt, std::vector<uint8_t> sense) {
  auto it = session_->tasks.find(itt);
  if (it == session_->tasks.end()) return;
  Task* t = it->second.get();
  t->scsi.status = scsi::ScsiStatus::kCheckCondition;
  t->scsi.sense = std::move(sense);
  t->scsi.cdb_transfer_length = t->edtl;
  t->state = Task::State::kSendingStatus;
  SendScsiResponse(t);
  FinishTask(t);
}

std::vector<OutgoingPdu> Connection::BuildDataIn(Task& task, bool with_status) {
  std::vector<OutgoingPdu> pdus;
  uint32_t total = std::min(task.scsi.data_in_length, task.edtl);
  uint32_t segment = std::max<uint32_t>(512, max_send_segment());
  uint32_t burst_max = std::max<uint32_t>(512, params().max_burst_length);
  uint32_t offset = 0, in_burst = 0;
  const uint8_t* base = task.buffer.data();
  while (offset < total) {
    uint32_t len = std::min({segment, total - offset, burst_max - in_burst});
    bool last = offset + len == total;
    in_burst += len;
    bool end_of_burst = in_burst == burst_max;
    OutgoingPdu out;
    out.bhs = Bhs::Make(Opcode::kDataIn, (last || end_of_burst) ? pdu::kFlagFinal : 0);
    out.bhs.set_lun_field(task.lun_field);
    out.bhs.set_itt(task.itt);
    out.bhs.set_ttt(pdu::kReservedTag);
    if (last && with_status) {
      out.bhs.set_flags(out.bhs.flags() | pdu::kDataInFlagStatus);
      out.bhs.set_byte(3, static_cast<uint8_t>(task.scsi.status));
      FillSequence(out.bhs, true);
      FillResidual(task, out.bhs);
    } else {
      FillSequence(out.bhs, false);
      out.bhs.set_stat_sn(0);
    }
    out.bhs.set_u32(pdu::field::kDataSn, task.data_sn++);
    out.bhs.set_u32(pdu::field::kBufferOffset, offset);
    out.data = {base + offset, len};
    out.bhs.set_data_segment_length(len);
    if (end_of_burst) in_burst = 0;
    offset += len;
    pdus.push_back(std::move(out));
  }
  // The last PDU owns the buffer; the others point into it and are sent first.
  if (!pdus.empty()) pdus.back().buffer = std::move(task.buffer);
  return pdus;
}

std::optional<OutgoingPdu> Connection::BuildNextR2t(Task& task) {
  if (task.next_r2t_offset >= task.edtl) return std::nullopt;
  SolicitedBurst burst;
  burst.ttt = next_ttt_++;
  if (burst.ttt == pdu::kReservedTag) burst.ttt = next_ttt_++;
  burst.r2t_sn = task.next_r2t_sn++;
  burst.offset = task.next_r2t_offset;
  burst.length = std::min(params().max_burst_length, task.edtl - task.next_r2t_offset);
  task.next_r2t_offset += burst.length;
  task.bursts.push_back(burst);

  OutgoingPdu out;
  out.bhs = Bhs::Make(Opcode::kR2t);
  out.bhs.set_lun_field(task.lun_field);
  out.bhs.set_itt(task.itt);
  out.bhs.set_ttt(burst.ttt);
  FillSequence(out.bhs, false);
  out.bhs.set_u32(pdu::field::kDataSn, burst.r2t_sn);
  out.bhs.set_u32(pdu::field::kBufferOffset, burst.offset);
  out.bhs.set_u32(pdu::field::kDesiredLength, burst.length);
  return out;
}

}  // namespace iser::target
