// Connection core, control path: NOP-Out/NOP-In, Text, Task Management, Logout, Async.
#include <algorithm>

#include "absl/strings/str_format.h"
#include "iser/base/logging.h"
#include "iser/target/connection.h"
#include "iser/target/target.h"

namespace iser::target {

using pdu::Bhs;
using pdu::Opcode;

// ------------------------------------------------------------------------------ NOP

void Connection::HandleNopOut(pdu::ReceivedPdu pdu) {
  const Bhs& bhs = pdu.bhs;
  if (bhs.itt() == pdu::kReservedTag) {
    // The initiator's answer to our NOP-In ping.
    if (bhs.ttt() == nop_ttt_) nop_outstanding_ = false;
    return;
  }
  std::vector<uint8_t> ping(pdu.data.begin(), pdu.data.end());
  SendNopIn(bhs.itt(), pdu::kReservedTag, bhs.lun_field(), std::move(ping));
}

void Connection::SendNopIn(uint32_t itt, uint32_t ttt, uint64_t lun_field,
                           std::vector<uint8_t> data) {
  OutgoingPdu out;
  out.bhs = Bhs::Make(Opcode::kNopIn);
  out.bhs.set_lun_field(lun_field);
  out.bhs.set_itt(itt);
  out.bhs.set_ttt(ttt);
  // A reply to a NOP-Out consumes a StatSN; an unsolicited ping does not (sec 11.19).
  FillSequence(out.bhs, itt != pdu::kReservedTag);
  if (data.size() > max_send_segment()) data.resize(max_send_segment());
  out.SetOwnedData(std::move(data));
  transport_->SendPdu(std::move(out));
}

void Connection::ArmNopTimer() {
  absl::Duration interval = target_->options().nop_interval;
  if (interval <= absl::ZeroDuration()) return;
  nop_timer_ = target_->loop()->RunAfter(interval, [this] {
    nop_timer_ = 0;
    OnNopTimer();
  });
}

void Connection::OnNopTimer() {
  if (phase_ != Phase::kFullFeature) return;
  if (nop_outstanding_) {
    Close(absl::DeadlineExceededError("initiator did not answer NOP-In"));
    return;
  }
  if (absl::Now() - last_activity_ >= target_->options().nop_interval) {
    nop_ttt_ = next_ttt_++;
    if (nop_ttt_ == pdu::kReservedTag) nop_ttt_ = next_ttt_++;
    nop_outstanding_ = true;
    SendNopIn(pdu::kReservedTag, nop_ttt_, 0, {});
  }
  ArmNopTimer();
}

// ----------------------------------------------------------------------------- Text

void Connection::HandleTextRequest(pdu::ReceivedPdu pdu) {
  const Bhs& req = pdu.bhs;
  auto send = [&](std::string_view text, bool more) {
    OutgoingPdu out;
    out.bhs = Bhs::Make(Opcode::kTextResponse, more ? pdu::kFlagContinue : pdu::kFlagFinal);
    out.bhs.set_lun_field(req.lun_field());
    out.bhs.set_itt(req.itt());
    if (more) {
      text_ttt_ = next_ttt_++;
      if (text_ttt_ == pdu::kReservedTag) text_ttt_ = next_ttt_++;
    } else {
      text_ttt_ = pdu::kReservedTag;
    }
    out.bhs.set_ttt(text_ttt_);
    FillSequence(out.bhs, true);
    out.SetOwnedData(std::vector<uint8_t>(text.begin(), text.end()));
    transport_->SendPdu(std::move(out));
  };
  auto send_chunk = [&] {
    size_t max = max_send_segment();
    std::string chunk = text_pending_out_.substr(0, max);
    text_pending_out_.erase(0, chunk.size());
    send(chunk, !text_pending_out_.empty());
  };

  if (req.ttt() != pdu::kReservedTag) {
    // Continuation of our long response (sec 11.10.4): send the next piece.
    if (req.ttt() != text_ttt_) {
      SendReject(req, pdu::RejectReason::kInvalidPduField);
      return;
    }
    send_chunk();
    return;
  }
  login_text_.append(reinterpret_cast<const char*>(pdu.data.data()), pdu.data.size());
  if (login_text_.size() > 64 * 1024) {
    login_text_.clear();
    SendReject(req, pdu::RejectReason::kProtocolError);
    return;
  }
  if (req.flags() & pdu::kFlagContinue) {
    send("", true);  // more request text follows; answer empty (sec 11.10.2)
    return;
  }
  std::vector<login::TargetNodeInfo> infos = target_->NodeInfos();
  // Only targets this initiator may log in to are disclosed.
  std::erase_if(infos, [&](const login::TargetNodeInfo& info) {
    return !info.allowed_initiators.empty() &&
           std::find(info.allowed_initiators.begin(), info.allowed_initiators.end(),
                     session_->initiator_name) == info.allowed_initiators.end();
  });
  text_pending_out_ = login::TargetTextResponse(
      login_text_, session_->type, session_->node ? session_->node->info.name : "", infos,
      target_->options().portals, session_->initiator_name);
  login_text_.clear();
  send_chunk();
}

// ------------------------------------------------------------------ Task management

void Connection::HandleTaskMgmt(pdu::ReceivedPdu pdu) {
  const Bhs& req = pdu.bhs;
  auto function = static_cast<pdu::TmfFunction>(req.flags() & 0x7f);
  uint32_t req_itt = req.itt();
  uint64_t conn_id = id_;
  Target* target = target_;
  auto respond = [target, conn_id, req_itt](pdu::TmfResponse response) {
    Connection* c = target->FindConnection(conn_id);
    if (c == nullptr || c->phase_ != Phase::kFullFeature) return;
    OutgoingPdu out;
    out.bhs = Bhs::Make(Opcode::kTaskMgmtResponse);
    out.bhs.set_byte(2, static_cast<uint8_t>(response));
    out.bhs.set_itt(req_itt);
    c->FillSequence(out.bhs, true);
    c->transport_->SendPdu(std::move(out));
  };
  // Aborts `victims`; the response goes out when the last one has left the SCSI layer.
  auto abort_then_respond = [&](std::vector<Task*> victims) {
    auto waiter = std::make_shared<TmfWaiter>();
    for (Task* t : victims) {
      if (t->state == Task::State::kExecuting) {
        t->aborted = true;
        t->tmf_waiter = waiter;
        waiter->remaining++;
      } else if (t->state == Task::State::kReceivingData) {
        t->conn->FinishTask(t);
      }
    }
    if (waiter->remaining == 0) {
      respond(pdu::TmfResponse::kComplete);
    } else {
      waiter->on_done = [respond] { respond(pdu::TmfResponse::kComplete); };
    }
  };
  uint64_t lun = pdu::DecodeLun(req.lun_field());
  auto tasks_for = [&](Session* s, bool any_lun) {
    std::vector<Task*> out;
    for (auto& [itt, t] : s->tasks)
      if ((any_lun || pdu::DecodeLun(t->lun_field) == lun) &&
          t->state != Task::State::kSendingStatus)
        out.push_back(t.get());
    return out;
  };

  switch (function) {
    case pdu::TmfFunction::kAbortTask: {
      auto it = session_->tasks.find(req.ttt());
      if (it == session_->tasks.end()) {
        // sec 11.5.1 b/c: a referenced command not yet received but inside the window
        // counts as received (and so is aborted); otherwise the task does not exist.
        uint32_t ref = req.u32(pdu::field::kRefCmdSn);
        bool in_window = pdu::SnLessEq(session_->exp_cmd_sn, ref) &&
                         pdu::SnLessEq(ref, session_->max_cmd_sn()) &&
                         pdu::SnLess(ref, req.cmd_sn());
        respond(in_window ? pdu::TmfResponse::kComplete : pdu::TmfResponse::kTaskDoesNotExist);
        return;
      }
      Task* victim = it->second.get();
      if (victim->lun_field != req.lun_field() || victim->state == Task::State::kSendingStatus) {
        respond(pdu::TmfResponse::kTaskDoesNotExist);
        return;
      }
      abort_then_respond({victim});
      return;
    }
    case pdu::TmfFunction::kAbortTaskSet:
    case pdu::TmfFunction::kClearTaskSet: {
      if (session_->node->device->FindLogicalUnit(lun) == nullptr) {
        respond(pdu::TmfResponse::kLunDoesNotExist);
        return;
      }
      abort_then_respond(tasks_for(session_, false));
      return;
    }
    case pdu::TmfFunction::kLogicalUnitReset: {
      if (session_->node->device->FindLogicalUnit(lun) == nullptr) {
        respond(pdu::TmfResponse::kLunDoesNotExist);
        return;
      }
      ISER_LOG(kInfo, "conn %llu: LOGICAL UNIT RESET lun %llu",
               static_cast<unsigned long long>(id_), static_cast<unsigned long long>(lun));
      std::vector<Task*> victims = tasks_for(session_, false);
      target_->AbortTasks(&lun, session_);
      session_->node->device->LogicalUnitReset(lun, session_->nexus);
      abort_then_respond(std::move(victims));
      return;
    }
    case pdu::TmfFunction::kTargetWarmReset:
    case pdu::TmfFunction::kTargetColdReset: {
      bool cold = function == pdu::TmfFunction::kTargetColdReset;
      ISER_LOG(kInfo, "conn %llu: TARGET %s RESET", static_cast<unsigned long long>(id_),
               cold ? "COLD" : "WARM");
      std::vector<Task*> victims = tasks_for(session_, true);
      target_->AbortTasks(nullptr, session_);
      session_->node->device->TargetReset(cold, session_->nexus);
      abort_then_respond(std::move(victims));
      if (cold) {
        // A cold reset closes every connection once the response is out (sec 11.5.1).
        transport_->CloseAfterFlush();
        target_->loop()->Defer([target] { target->CloseAllConnections(); });
      }
      return;
    }
    case pdu::TmfFunction::kTaskReassign:
      respond(pdu::TmfResponse::kReassignmentNotSupported);
      return;
    case pdu::TmfFunction::kClearAca:
    default:
      respond(pdu::TmfResponse::kNotSupported);
      return;
  }
}

// --------------------------------------------------------------------------- Logout

void Connection::HandleLogout(pdu::ReceivedPdu pdu) {
  const Bhs& req = pdu.bhs;
  uint8_t reason = req.flags() & 0x7f;
  uint8_t response = 0;
  Connection* to_close = this;
  if (reason == 1) {  // close the connection named by CID
    uint16_t cid = req.u16(pdu::field::kCid);
    to_close = nullptr;
    for (Connection* c : session_->connections)
      if (c->cid_ == cid) to_close = c;
    if (to_close == nullptr) response = 1;  // CID not found
  } else if (reason == 2) {
    response = 2;  // connection recovery is not supported (ErrorRecoveryLevel < 2)
  } else if (reason != 0) {
    SendReject(req, pdu::RejectReason::kInvalidPduField);
    return;
  }
  OutgoingPdu out;
  out.bhs = Bhs::Make(Opcode::kLogoutResponse);
  out.bhs.set_byte(2, response);
  out.bhs.set_itt(req.itt());
  FillSequence(out.bhs, true);
  out.bhs.set_u16(pdu::field::kTime2Wait, 0);
  out.bhs.set_u16(pdu::field::kTime2Retain, 0);
  transport_->SendPdu(std::move(out));
  if (response != 0) return;
  ISER_LOG(kInfo, "conn %llu: logout (%s)", static_cast<unsigned long long>(id_),
           reason == 0 ? "close session" : "close connection");
  if (reason == 0) {
    session_->logging_out = true;
    for (Connection* c : std::vector<Connection*>(session_->connections))
      if (c != this) c->Close(absl::OkStatus());
  }
  if (to_close == this) {
    phase_ = Phase::kClosing;
    transport_->CloseAfterFlush();
  } else if (to_close != nullptr) {
    to_close->Close(absl::OkStatus());
  }
}

void Connection::RequestLogout(uint16_t seconds) {
  if (phase_ != Phase::kFullFeature) return;
  OutgoingPdu out;
  out.bhs = Bhs::Make(Opcode::kAsyncMessage);
  out.bhs.set_itt(pdu::kReservedTag);
  FillSequence(out.bhs, true);
  out.bhs.set_byte(36, 1);       // AsyncEvent 1: target requests Logout
  out.bhs.set_u16(42, seconds);  // Parameter3: time to logout
  transport_->SendPdu(std::move(out));
}

size_t Connection::active_task_count() const {
  if (session_ == nullptr) return 0;
  size_t n = 0;
  for (auto& [itt, t] : session_->tasks)
    if (t->conn == this) n++;
  return n;
}

}  // namespace iser::target
