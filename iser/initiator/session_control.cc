// Control PDUs: the receive dispatch, NOP keep-alive, task management, text
// (SendTargets), Async messages and Rejects.
#include <algorithm>
#include <vector>

#include "absl/strings/str_cat.h"
#include "iser/base/logging.h"
#include "iser/initiator/session.h"

namespace iser::initiator {

using pdu::Bhs;
using pdu::Opcode;

uint32_t Session::NextItt() {
  for (;;) {
    uint32_t itt = next_itt_++;
    if (itt == pdu::kReservedTag || tasks_.count(itt) || controls_.count(itt)) continue;
    return itt;
  }
}

Bhs Session::MakeRequest(Opcode op, uint8_t flags, bool immediate) {
  Bhs b = Bhs::Make(op, flags);
  b.set_immediate(immediate);
  b.set_u32(pdu::field::kCmdSn, cmd_sn_);
  if (!immediate) ++cmd_sn_;
  return b;  // the sender fills in its connection's ExpStatSN
}

void Session::SendControl(OutgoingPdu pdu, ControlHandler handler, Connection* on) {
  if (on == nullptr) on = leading();
  if (on == nullptr || !on->ready ||
      (phase_ != Phase::kFullFeature && phase_ != Phase::kLoggingOut)) {
    handler(absl::UnavailableError("not connected"));
    return;
  }
  uint32_t itt = NextItt();
  pdu.bhs.set_itt(itt);
  pdu.bhs.set_u32(pdu::field::kExpStatSn, on->exp_stat_sn);
  controls_.emplace(itt, std::move(handler));
  on->transport->SendPdu(std::move(pdu));
}

void Session::FailControls(const absl::Status& why) {
  std::unordered_map<uint32_t, ControlHandler> controls = std::move(controls_);
  controls_.clear();
  for (auto& [itt, handler] : controls) handler(why);
}

void Session::AckStatSn(Connection& c, const Bhs& b) {
  // StatSN counts per connection; these PDUs carry a new one (Data-In only with status,
  // NOP-In only when it answers our ping, RFC 7143 sec 11.19.2).
  switch (b.opcode()) {
    case Opcode::kDataIn:
      if (!(b.flags() & pdu::kDataInFlagStatus)) return;
      break;
    case Opcode::kNopIn:
      if (b.itt() == pdu::kReservedTag) return;
      break;
    case Opcode::kScsiResponse:
    case Opcode::kTaskMgmtResponse:
    case Opcode::kTextResponse:
    case Opcode::kLogoutResponse:
    case Opcode::kAsyncMessage:
    case Opcode::kReject:
      break;
    default:
      return;
  }
  uint32_t sn = b.u32(pdu::field::kStatSn);
  if (pdu::SnLessEq(c.exp_stat_sn, sn)) c.exp_stat_sn = sn + 1;
}

void Session::UpdateWindow(const Bhs& b) {
  uint32_t exp = b.u32(pdu::field::kExpCmdSn);
  uint32_t max = b.u32(pdu::field::kMaxCmdSn);
  if (pdu::SnLess(max, exp - 1)) return;  // an invalid window: ignore (RFC 7143 sec 4.2.2.1)
  if (pdu::SnLess(max_cmd_sn_, max)) max_cmd_sn_ = max;
  if (pdu::SnLess(exp_cmd_sn_, exp)) exp_cmd_sn_ = exp;
}

void Session::ProtocolError(const std::string& what) {
  ISER_LOG(kWarning, "session %s: protocol error: %s", config_.target_name, what);
  if (phase_ == Phase::kFullFeature) {
    BeginRecovery(absl::InternalError(what));
  } else if (Connection* lead = leading(); lead != nullptr) {
    lead->transport->Abort(absl::InternalError(what));
  }
}

void Session::OnPdu(Connection& c, pdu::ReceivedPdu pdu) {
  ++c.rx_pdus;
  if (!c.ready) {
    if (c.negotiator) HandleLoginResponse(c, std::move(pdu));
    return;
  }
  if (phase_ != Phase::kFullFeature && phase_ != Phase::kLoggingOut) return;
  if (!pdu.data_digest_ok) return ProtocolError("data digest mismatch");
  const Bhs& b = pdu.bhs;
  UpdateWindow(b);
  AckStatSn(c, b);
  switch (b.opcode()) {
    case Opcode::kDataIn:
      HandleDataIn(pdu);
      break;
    case Opcode::kScsiResponse:
      HandleScsiResponse(pdu);
      break;
    case Opcode::kR2t:
      HandleR2t(b);
      break;
    case Opcode::kNopIn:
      HandleNopIn(c, pdu);
      break;
    case Opcode::kTaskMgmtResponse:
    case Opcode::kTextResponse:
    case Opcode::kLogoutResponse: {
      auto it = controls_.find(b.itt());
      if (it == controls_.end()) break;
      ControlHandler handler = std::move(it->second);
      controls_.erase(it);
      handler(std::move(pdu));
      break;
    }
    case Opcode::kAsyncMessage:
      HandleAsync(pdu);
      break;
    case Opcode::kReject:
      HandleReject(pdu);
      break;
    default:
      ProtocolError(absl::StrCat("unexpected PDU ", pdu::DescribeBhs(b)));
      break;
  }
  Pump();
}

void Session::HandleNopIn(Connection& c, pdu::ReceivedPdu& pdu) {
  const Bhs& b = pdu.bhs;
  if (b.ttt() != pdu::kReservedTag) {
    // The target's ping: answer on the same connection with the same TTT, LUN and data.
    OutgoingPdu p;
    p.bhs = MakeRequest(Opcode::kNopOut, pdu::kFlagFinal, true);
    p.bhs.set_itt(pdu::kReservedTag);
    p.bhs.set_ttt(b.ttt());
    p.bhs.set_lun_field(b.lun_field());
    p.bhs.set_u32(pdu::field::kExpStatSn, c.exp_stat_sn);
    p.SetOwnedData(std::vector<uint8_t>(pdu.data.begin(), pdu.data.end()));
    c.transport->SendPdu(std::move(p));
  }
  if (b.itt() == pdu::kReservedTag) return;
  auto it = controls_.find(b.itt());
  if (it == controls_.end()) return;
  ControlHandler handler = std::move(it->second);
  controls_.erase(it);
  handler(std::move(pdu));
}

void Session::StartKeepAlive() {
  if (config_.nop_interval <= absl::ZeroDuration()) return;
  CancelTimer(&keepalive_timer_);
  for (auto& c : conns_) c->rx_pdus_at_tick = c->rx_pdus;
  keepalive_timer_ = After(config_.nop_interval, [this] {
    keepalive_timer_ = 0;
    KeepAliveTick();
  });
}

void Session::KeepAliveTick() {
  if (phase_ != Phase::kFullFeature) return;
  std::vector<Connection*> silent;
  for (auto& c : conns_) {
    if (c->ready && c->rx_pdus == c->rx_pdus_at_tick && c->ping_timer == 0) {
      silent.push_back(c.get());
    }
  }
  for (Connection* c : silent) Ping(*c);
  StartKeepAlive();
}

void Session::Ping(Connection& c) {
  // Nothing heard on this connection for a whole interval: ping it, and give up on the
  // session's connections (ERL 0) if the target does not answer in time.
  OutgoingPdu p;
  p.bhs = MakeRequest(Opcode::kNopOut, pdu::kFlagFinal, true);
  p.bhs.set_ttt(pdu::kReservedTag);
  Connection* conn = &c;  // the timer is cancelled when the connection closes
  c.ping_timer = After(config_.nop_timeout, [this, conn] {
    conn->ping_timer = 0;
    if (phase_ == Phase::kFullFeature) {
      BeginRecovery(absl::DeadlineExceededError(
          absl::StrCat("NOP-Out ping on connection CID ", conn->cid, " not answered")));
    }
  });
  uint64_t generation = connection_generation_;
  SendControl(
      std::move(p),
      [this, conn, generation](absl::StatusOr<pdu::ReceivedPdu>) {
        // Connections only go away with a new generation (or before they are ready).
        if (generation == connection_generation_) CancelTimer(&conn->ping_timer);
      },
      conn);
}

void Session::TaskManagement(pdu::TmfFunction function, uint64_t lun, uint32_t ref_itt,
                             absl::AnyInvocable<void(absl::StatusOr<pdu::TmfResponse>)> done) {
  OutgoingPdu p;
  p.bhs =
      MakeRequest(Opcode::kTaskMgmtRequest, pdu::kFlagFinal | static_cast<uint8_t>(function), true);
  p.bhs.set_lun_field(pdu::EncodeLun(lun));
  uint32_t ref_cmd_sn = cmd_sn_;
  Connection* on = nullptr;  // the leading connection
  if (function == pdu::TmfFunction::kAbortTask) {
    auto it = tasks_.find(ref_itt);
    if (it != tasks_.end()) {
      ref_cmd_sn = it->second->cmd_sn;
      on = it->second->connection;  // where the task is allegiant
    }
    p.bhs.set_u32(pdu::field::kRefTaskTag, ref_itt);
  } else {
    p.bhs.set_u32(pdu::field::kRefTaskTag, pdu::kReservedTag);
  }
  p.bhs.set_u32(pdu::field::kRefCmdSn, ref_cmd_sn);
  auto shared_done = std::make_shared<decltype(done)>(std::move(done));
  // A target that never answers a TMF is as good as dead: recover the connection.
  uint64_t generation = connection_generation_;
  EventLoop::TimerId timer = After(config_.login_timeout, [this, generation] {
    if (phase_ == Phase::kFullFeature && generation == connection_generation_) {
      BeginRecovery(absl::DeadlineExceededError("task management request not answered"));
    }
  });
  uint32_t tmf_cmd_sn = cmd_sn_;
  SendControl(
      std::move(p),
      [this, timer, shared_done, function, lun, tmf_cmd_sn](absl::StatusOr<pdu::ReceivedPdu> rsp) {
        loop_->CancelTimer(timer);
        if (!rsp.ok()) return (*shared_done)(rsp.status());
        auto response = static_cast<pdu::TmfResponse>(rsp->bhs.byte(2));
        bool lun_wide = function == pdu::TmfFunction::kLogicalUnitReset ||
                        function == pdu::TmfFunction::kAbortTaskSet ||
                        function == pdu::TmfFunction::kClearTaskSet;
        if (lun_wide && response == pdu::TmfResponse::kComplete) RequeueAborted(lun, tmf_cmd_sn);
        (*shared_done)(response);
        Pump();
      },
      on);
}

void Session::RequeueAborted(uint64_t lun, uint32_t before_cmd_sn) {
  // The target ended these commands without a response; they never completed for the
  // caller, so they go out again (as a SCSI initiator retries after a reset).
  std::vector<Task*> aborted;
  for (auto& [itt, task] : tasks_) {
    Task& t = *task;
    if (!t.issued || t.command.lun != lun || !pdu::SnLess(t.cmd_sn, before_cmd_sn)) continue;
    t.deadline = absl::InfiniteFuture();
    t.issued = false;
    t.aborting = false;
    --in_flight_;
    if (t.connection != nullptr) t.connection->transport->ReleaseTask(t.io);
    t.connection = nullptr;
    aborted.push_back(&t);
  }
  std::sort(aborted.begin(), aborted.end(), [](Task* a, Task* b) { return a->order > b->order; });
  for (Task* t : aborted) pending_.push_front(t);
}

void Session::SendTextRequest(std::string text, uint32_t ttt,
                              std::shared_ptr<std::string> accumulated,
                              absl::AnyInvocable<void(absl::StatusOr<std::string>)> done) {
  OutgoingPdu p;
  p.bhs = MakeRequest(Opcode::kTextRequest, pdu::kFlagFinal, false);
  p.bhs.set_ttt(ttt);
  p.SetOwnedData(std::vector<uint8_t>(text.begin(), text.end()));
  SendControl(std::move(p), [this, accumulated,
                             done = std::move(done)](absl::StatusOr<pdu::ReceivedPdu> rsp) mutable {
    if (!rsp.ok()) return done(rsp.status());
    accumulated->append(rsp->data.begin(), rsp->data.end());
    if (rsp->bhs.flags() & pdu::kFlagContinue) {
      SendTextRequest("", rsp->bhs.ttt(), accumulated, std::move(done));
      return;
    }
    done(*accumulated);
  });
}

void Session::SendTargets(
    absl::AnyInvocable<void(absl::StatusOr<std::vector<DiscoveredTarget>>)> done) {
  std::string request = "SendTargets=All";
  request.push_back('\0');
  SendTextRequest(request, pdu::kReservedTag, std::make_shared<std::string>(),
                  [done = std::move(done)](absl::StatusOr<std::string> text) mutable {
                    if (!text.ok()) return done(text.status());
                    std::vector<DiscoveredTarget> targets;
                    size_t pos = 0;
                    while (pos < text->size()) {
                      size_t end = text->find('\0', pos);
                      if (end == std::string::npos) end = text->size();
                      std::string kv = text->substr(pos, end - pos);
                      pos = end + 1;
                      if (kv.rfind("TargetName=", 0) == 0) {
                        targets.push_back(DiscoveredTarget{kv.substr(11), {}});
                      } else if (kv.rfind("TargetAddress=", 0) == 0 && !targets.empty()) {
                        targets.back().addresses.push_back(kv.substr(14));
                      }
                    }
                    done(std::move(targets));
                  });
}

void Session::SetAsyncSenseListener(uint64_t lun, AsyncSenseListener listener) {
  async_listeners_[lun] = std::move(listener);
}

void Session::RemoveAsyncSenseListener(uint64_t lun) { async_listeners_.erase(lun); }

void Session::HandleAsync(pdu::ReceivedPdu& pdu) {
  const Bhs& b = pdu.bhs;
  uint8_t event = b.byte(36);
  switch (event) {
    case 0: {  // SCSI asynchronous event: sense data for a LUN
      if (pdu.data.size() < 2) return;
      size_t len = std::min<size_t>((size_t{pdu.data[0]} << 8) | pdu.data[1], pdu.data.size() - 2);
      auto it = async_listeners_.find(pdu::DecodeLun(b.lun_field()));
      if (it != async_listeners_.end()) it->second({pdu.data.data() + 2, len});
      return;
    }
    case 1: {  // the target asks us to log out within Parameter3 seconds
      ISER_LOG(kInfo, "session %s: target requested logout", config_.target_name);
      if (logout_requested_) return;
      logout_requested_ = true;
      absl::Duration deadline = absl::Seconds(std::max<int>(1, b.u16(42)));
      logout_deadline_timer_ = After(deadline, [this] {
        logout_deadline_timer_ = 0;
        if (phase_ != Phase::kFullFeature || logout_sent_) return;
        MaybeLogoutForTarget(/*force=*/true);  // what is left is reissued after the logout
      });
      MaybeLogoutForTarget();
      return;
    }
    default:  // 2/3: the target will drop the connection/session; recovery follows
      ISER_LOG(kInfo, "session %s: async event %d", config_.target_name, event);
      return;
  }
}

void Session::MaybeLogoutForTarget(bool force) {
  if (phase_ != Phase::kFullFeature || logout_sent_ || (in_flight_ > 0 && !force)) return;
  logout_sent_ = true;
  CancelTimer(&logout_deadline_timer_);
  OutgoingPdu p;
  p.bhs = MakeRequest(Opcode::kLogoutRequest, pdu::kFlagFinal, true);  // close the session
  SendControl(std::move(p), [this](absl::StatusOr<pdu::ReceivedPdu>) {
    if (phase_ == Phase::kFullFeature) {
      BeginRecovery(absl::UnavailableError("logged out at the target's request"));
    }
  });
}

void Session::HandleReject(pdu::ReceivedPdu& pdu) {
  const Bhs& b = pdu.bhs;
  uint8_t reason = b.byte(2);
  if (pdu.data.size() < pdu::kBhsSize) return ProtocolError("Reject without the rejected header");
  Bhs rejected(std::span<const uint8_t, pdu::kBhsSize>(pdu.data.data(), pdu::kBhsSize));
  ISER_LOG(kWarning, "session %s: target rejected %s (reason 0x%x)", config_.target_name,
           pdu::DescribeBhs(rejected), reason);
  absl::Status why = absl::InternalError(absl::StrCat("PDU rejected by target, reason ", reason));
  auto c = controls_.find(rejected.itt());
  if (c != controls_.end()) {
    ControlHandler handler = std::move(c->second);
    controls_.erase(c);
    handler(why);
    return;
  }
  if (rejected.opcode() == Opcode::kScsiCommand) Complete(rejected.itt(), why);
}

}  // namespace iser::initiator
