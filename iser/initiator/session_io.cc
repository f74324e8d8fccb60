// SCSI commands: the CmdSN window, immediate/unsolicited data, Data-In, R2T, responses.
#include <algorithm>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "iser/base/logging.h"
#include "iser/initiator/session.h"

namespace iser::initiator {

using pdu::Bhs;
using pdu::Opcode;

void Session::Submit(ScsiCommand command, ScsiCallback done) {
  if (phase_ == Phase::kClosed || (fail_fast_ && phase_ != Phase::kFullFeature)) {
    done(absl::UnavailableError(
        absl::StrCat("I/O error: session to ", config_.portal, " is not connected")));
    return;
  }
  if (!command.read.empty() && !command.write.empty()) {
    done(absl::InvalidArgumentError("bidirectional commands are not supported"));
    return;
  }
  auto task = std::make_unique<Task>();
  task->itt = NextItt();
  task->order = next_order_++;
  task->command = command;
  task->done = std::move(done);
  Task* raw = task.get();
  tasks_.emplace(raw->itt, std::move(task));
  pending_.push_back(raw);
  Pump();
}

void Session::Pump() {
  if (logout_requested_) return MaybeLogoutForTarget();
  while (phase_ == Phase::kFullFeature && !pending_.empty() && in_flight_ < config_.queue_depth &&
         pdu::SnLessEq(cmd_sn_, max_cmd_sn_)) {
    Connection* c = PickConnection();
    if (c == nullptr) return;
    Task* t = pending_.front();
    pending_.pop_front();
    Issue(*t, *c);
  }
}

void Session::Issue(Task& task, Connection& conn) {
  const ScsiCommand& c = task.command;
  bool reading = !c.read.empty();
  bool writing = !c.write.empty();
  uint32_t edtl = static_cast<uint32_t>(reading ? c.read.size() : c.write.size());
  uint32_t immediate = 0;
  uint32_t unsolicited_end = 0;
  if (writing) {
    if (params_.immediate_data) {
      // Over iSER the control-PDU limit is TargetRecvDataSegmentLength (RFC 7145 sec 6.5).
      uint32_t max_segment =
          params_.rdma_extensions ? params_.target_recv_dsl : params_.target_max_recv_dsl;
      immediate = std::min({edtl, params_.first_burst_length, max_segment});
      // A transport that fetches solicited data in place sends immediate data only when
      // the whole write fits: a write that needs soliciting anyway costs a round trip
      // either way, and its immediate part would be copied out of a receive buffer.
      if (immediate < edtl && conn.transport->solicit_beyond_immediate()) immediate = 0;
    }
    unsolicited_end = params_.initial_r2t || conn.transport->solicit_beyond_immediate()
                          ? immediate
                          : std::min(edtl, params_.first_burst_length);
  }
  uint8_t flags = static_cast<uint8_t>((unsolicited_end == immediate ? pdu::kFlagFinal : 0) |
                                       (reading ? pdu::kCmdFlagRead : 0) |
                                       (writing ? pdu::kCmdFlagWrite : 0) | 1 /* simple */);
  OutgoingPdu p;
  task.cmd_sn = cmd_sn_;
  p.bhs = MakeRequest(Opcode::kScsiCommand, flags, false);
  p.bhs.set_u32(pdu::field::kExpStatSn, conn.exp_stat_sn);
  p.bhs.set_lun_field(pdu::EncodeLun(c.lun));
  p.bhs.set_itt(task.itt);
  p.bhs.set_u32(pdu::field::kEdtl, edtl);
  std::memcpy(p.bhs.data() + pdu::field::kCdb, c.cdb.data(), c.cdb.size());
  p.data = c.write.subspan(0, immediate);
  task.io = TaskIo{};
  task.io.itt = task.itt;
  task.io.lun_field = p.bhs.lun_field();
  task.io.read = c.read;
  task.io.write = c.write;
  task.issued = true;
  task.aborting = false;
  task.connection = &conn;
  ++conn.commands;
  ++in_flight_;
  conn.transport->SendCommand(std::move(p), task.io);
  if (unsolicited_end > immediate) {
    conn.transport->SendDataOut(task.io, pdu::kReservedTag, immediate, unsolicited_end - immediate,
                                conn.exp_stat_sn);
  }
  absl::Duration timeout = c.timeout > absl::ZeroDuration() ? c.timeout : config_.command_timeout;
  task.deadline = absl::Now() + timeout;
  ArmTimeoutSweep(timeout);
}

void Session::Complete(uint32_t itt, absl::StatusOr<ScsiResult> result) {
  auto it = tasks_.find(itt);
  if (it == tasks_.end()) return;
  std::unique_ptr<Task> task = std::move(it->second);
  tasks_.erase(it);
  task->deadline = absl::InfiniteFuture();
  if (task->issued) {
    --in_flight_;
    if (task->connection != nullptr) task->connection->transport->ReleaseTask(task->io);
  } else {
    auto p = std::find(pending_.begin(), pending_.end(), task.get());
    if (p != pending_.end()) pending_.erase(p);
  }
  task->done(std::move(result));
  if (logout_requested_) MaybeLogoutForTarget();
}

std::span<uint8_t> Session::PlaceData(const Bhs& bhs) {
  if (bhs.opcode() != Opcode::kDataIn) return {};
  auto it = tasks_.find(bhs.itt());
  if (it == tasks_.end() || !it->second->issued) return {};
  std::span<uint8_t> buf = it->second->io.read;
  uint64_t offset = bhs.u32(pdu::field::kBufferOffset);
  uint64_t len = bhs.data_segment_length();
  if (offset + len > buf.size()) return {};
  return buf.subspan(offset, len);
}

void Session::HandleDataIn(pdu::ReceivedPdu& pdu) {
  const Bhs& b = pdu.bhs;
  auto it = tasks_.find(b.itt());
  if (it == tasks_.end() || !it->second->issued) {
    ISER_LOG(kDebug, "Data-In for unknown ITT 0x%x ignored", b.itt());
    return;
  }
  if (b.data_segment_length() > 0 && !pdu.placed) {
    return ProtocolError("Data-In outside the command's read buffer");
  }
  if (!(b.flags() & pdu::kDataInFlagStatus)) return;
  ScsiResult r;
  r.status = b.byte(3);
  r.residual = b.u32(pdu::field::kResidual);
  r.underflow = b.flags() & pdu::kRspFlagUnderflow;
  r.overflow = b.flags() & pdu::kRspFlagOverflow;
  Complete(b.itt(), std::move(r));
}

void Session::HandleScsiResponse(pdu::ReceivedPdu& pdu) {
  const Bhs& b = pdu.bhs;
  auto it = tasks_.find(b.itt());
  if (it == tasks_.end() || !it->second->issued) return;
  if (b.byte(2) != 0) {
    Complete(b.itt(),
             absl::InternalError(absl::StrCat("target failure (iSCSI response ", b.byte(2), ")")));
    return;
  }
  ScsiResult r;
  r.status = b.byte(3);
  r.residual = b.u32(pdu::field::kResidual);
  r.underflow = b.flags() & pdu::kRspFlagUnderflow;
  r.overflow = b.flags() & pdu::kRspFlagOverflow;
  if (pdu.data.size() >= 2) {
    size_t len = std::min<size_t>((size_t{pdu.data[0]} << 8) | pdu.data[1], pdu.data.size() - 2);
    r.sense.assign(pdu.data.begin() + 2, pdu.data.begin() + 2 + len);
  }
  Complete(b.itt(), std::move(r));
}

void Session::HandleR2t(const Bhs& b) {
  auto it = tasks_.find(b.itt());
  if (it == tasks_.end() || !it->second->issued || it->second->connection == nullptr) return;
  Task& t = *it->second;
  uint64_t offset = b.u32(pdu::field::kBufferOffset);
  uint64_t len = b.u32(pdu::field::kDesiredLength);
  if (len == 0 || offset + len > t.io.write.size()) {
    return ProtocolError(absl::StrCat("R2T for [", offset, ", +", len, ") beyond a write of ",
                                      t.io.write.size(), " bytes"));
  }
  // Allegiance: the Data-Out goes on the connection the command (and this R2T) used.
  Connection& c = *t.connection;
  c.transport->SendDataOut(t.io, b.ttt(), static_cast<uint32_t>(offset), static_cast<uint32_t>(len),
                           c.exp_stat_sn);
}

void Session::ArmTimeoutSweep(absl::Duration timeout) {
  // Check a few times per timeout (a command is aborted at most a quarter late).
  absl::Duration period = std::clamp(timeout / 4, absl::Milliseconds(10), absl::Milliseconds(500));
  if (timeout_sweep_timer_ != 0 && period >= sweep_period_) return;
  CancelTimer(&timeout_sweep_timer_);
  sweep_period_ = period;
  timeout_sweep_timer_ = After(period, [this] {
    timeout_sweep_timer_ = 0;
    SweepTimeouts();
  });
}

void Session::SweepTimeouts() {
  absl::Time now = absl::Now();
  std::vector<uint32_t> due;
  bool any_issued = false;
  for (auto& [itt, task] : tasks_) {
    if (!task->issued) continue;
    any_issued = true;
    if (task->deadline <= now) due.push_back(itt);
  }
  for (uint32_t itt : due) OnCommandTimeout(itt);
  if (!any_issued) {
    sweep_period_ = absl::InfiniteDuration();
    return;
  }
  absl::Duration period = sweep_period_;
  sweep_period_ = absl::InfiniteDuration();
  ArmTimeoutSweep(period * 4);
}

void Session::OnCommandTimeout(uint32_t itt) {
  auto it = tasks_.find(itt);
  if (it == tasks_.end()) return;
  Task& t = *it->second;
  t.deadline = absl::InfiniteFuture();
  if (phase_ != Phase::kFullFeature || !t.issued || t.aborting) return;
  t.aborting = true;
  ISER_LOG(kWarning, "session %s: command ITT 0x%x timed out; ABORT TASK", config_.target_name,
           itt);
  TaskManagement(pdu::TmfFunction::kAbortTask, t.command.lun, itt,
                 [this, itt](absl::StatusOr<pdu::TmfResponse> r) {
                   // Without an answer the connection is being recovered: the command will
                   // be reissued. With one, the target no longer has it.
                   if (!r.ok()) return;
                   Complete(itt, absl::DeadlineExceededError("command timed out and was aborted"));
                 });
}

void Session::RequeueIssued() {
  std::vector<Task*> all;
  for (auto& [itt, task] : tasks_) {
    Task& t = *task;
    t.deadline = absl::InfiniteFuture();
    t.issued = false;
    t.aborting = false;
    t.connection = nullptr;
    t.io.transport_private = nullptr;
    all.push_back(&t);
  }
  std::sort(all.begin(), all.end(), [](Task* a, Task* b) { return a->order < b->order; });
  pending_.assign(all.begin(), all.end());
  in_flight_ = 0;
}

}  // namespace iser::initiator
