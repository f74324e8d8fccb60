// Session lifecycle: connect, login, full feature phase entry, recovery, logout.
#include "iser/initiator/session.h"

#include <openssl/rand.h>

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "iser/base/logging.h"

namespace iser::initiator {

using pdu::Bhs;
using pdu::Opcode;

Session::Session(EventLoop* loop, SessionConfig config)
    : loop_(loop), config_(std::move(config)), backoff_(config_.reconnect_backoff_initial) {
  isid_ = config_.isid;
  if (isid_ == 0) {
    uint8_t r[5];
    RAND_bytes(r, sizeof(r));
    isid_ = uint64_t{0xc0} << 40;  // T = 11b: random qualifier (RFC 7143 sec 11.12.5)
    for (int i = 0; i < 5; ++i) isid_ |= uint64_t{r[i]} << (8 * (4 - i));
  }
}

Session::~Session() {
  for (EventLoop::TimerId* t : {&keepalive_timer_, &replacement_timer_, &reconnect_timer_,
                                &logout_deadline_timer_, &timeout_sweep_timer_}) {
    CancelTimer(t);
  }
  CloseTransport(absl::AbortedError("session destroyed"));
  phase_ = Phase::kClosed;
  FailControls(absl::AbortedError("session destroyed"));
  FailAll(absl::AbortedError("session destroyed"));
}

EventLoop::TimerId Session::After(absl::Duration delay, absl::AnyInvocable<void()> fn) {
  std::weak_ptr<int> alive = life_;
  return loop_->RunAfter(delay, [alive, fn = std::move(fn)]() mutable {
    if (alive.lock()) fn();
  });
}

void Session::CancelTimer(EventLoop::TimerId* id) {
  if (*id != 0) loop_->CancelTimer(*id);
  *id = 0;
}

void Session::Login(StatusCallback done) {
  if (phase_ != Phase::kIdle) {
    done(absl::FailedPreconditionError("session already started"));
    return;
  }
  if (!config_.transport_factory) {
    done(absl::InvalidArgumentError("no transport factory configured"));
    return;
  }
  login_done_ = std::move(done);
  Connect();
}

void Session::Connect() {
  reconnect_timer_ = 0;
  phase_ = Phase::kConnecting;
  uint64_t generation = ++connection_generation_;
  std::weak_ptr<int> alive = life_;
  config_.transport_factory(
      loop_, config_.portal, config_.connect_timeout,
      [this, alive, generation](absl::StatusOr<std::unique_ptr<InitiatorTransport>> t) {
        if (!alive.lock() || generation != connection_generation_) return;
        OnConnected(std::move(t));
      });
}

void Session::OnConnected(absl::StatusOr<std::unique_ptr<InitiatorTransport>> transport) {
  if (phase_ != Phase::kConnecting) return;
  if (!transport.ok()) {
    LoginFailed(transport.status());
    return;
  }
  auto c = std::make_unique<Connection>();
  c->session = this;
  c->cid = 0;
  c->leading = true;
  c->transport = std::move(*transport);
  transport_kind_ = c->transport->kind();
  conns_.insert(conns_.begin(), std::move(c));
  tsih_ = 0;  // a new session or a reinstatement of ours (same ISID), never a continuation
  phase_ = Phase::kLogin;
  StartLogin(*conns_.front());
}

void Session::StartLogin(Connection& c) {
  c.transport->SetEvents(&c);
  c.exp_stat_sn = 0;
  login::InitiatorLoginConfig lc;
  lc.initiator_name = config_.initiator_name;
  lc.target_name = config_.target_name;
  lc.session_type = config_.session_type;
  lc.chap = config_.chap;
  lc.mutual_chap = config_.mutual_chap;
  login::OperationalParams& o = lc.offer;
  o.header_digest = config_.header_digest;
  o.data_digest = config_.data_digest;
  o.max_connections = std::max<uint32_t>(1, config_.connections);
  o.initial_r2t = config_.initial_r2t;
  o.immediate_data = config_.immediate_data;
  constexpr uint32_t kMaxKeyValue = (1u << 24) - 1;  // RFC 7143 sec 13.12-13.14
  o.max_burst_length = std::min(config_.max_burst_length, kMaxKeyValue);
  o.first_burst_length = std::min(config_.first_burst_length, o.max_burst_length);
  o.max_outstanding_r2t = std::max<uint32_t>(1, config_.max_outstanding_r2t);
  o.initiator_max_recv_dsl =
      std::clamp<uint32_t>(config_.max_recv_data_segment_length, 512, kMaxKeyValue);
  o.error_recovery_level = 0;
  if (!c.leading) {
    // A connection joining the session: only connection keys are negotiated; the
    // session's values hold for the rest (RFC 7143 sec 6.3, "LO" keys).
    lc.leading = false;
    lc.session_params = params_;
  }
  c.transport->PrepareLogin(lc);
  c.negotiator = std::make_unique<login::InitiatorNegotiator>(std::move(lc));
  c.login_itt = NextItt();
  c.login_text.clear();
  Connection* conn = &c;  // the timer is cancelled when the connection closes
  c.login_timer = After(config_.login_timeout, [this, conn] {
    conn->login_timer = 0;
    absl::Status why = absl::DeadlineExceededError("login timed out");
    if (!conn->leading) return ExtraLoginFailed(*conn, why);
    if (phase_ == Phase::kLogin) LoginFailed(why);
  });
  SendLoginRequest(c, c.negotiator->Start());
}

void Session::SendLoginRequest(Connection& c, const login::InitiatorRequest& request) {
  c.last_login_request = request;
  uint8_t flags = static_cast<uint8_t>((request.transit ? pdu::kLoginFlagTransit : 0) |
                                       (request.csg << 2) | request.nsg);
  OutgoingPdu p;
  p.bhs = Bhs::Make(Opcode::kLoginRequest, flags);
  p.bhs.set_immediate(true);
  p.bhs.set_u48(pdu::field::kIsid, isid_);
  p.bhs.set_u16(pdu::field::kTsih, tsih_);
  p.bhs.set_itt(c.login_itt);
  p.bhs.set_u16(pdu::field::kCid, c.cid);
  p.bhs.set_u32(pdu::field::kCmdSn, cmd_sn_);
  p.bhs.set_u32(pdu::field::kExpStatSn, c.exp_stat_sn);
  p.SetOwnedData(std::vector<uint8_t>(request.text.begin(), request.text.end()));
  c.transport->SendPdu(std::move(p));
}

void Session::HandleLoginResponse(Connection& c, pdu::ReceivedPdu pdu) {
  const Bhs& b = pdu.bhs;
  auto fail = [&](const absl::Status& why) {
    if (c.leading) return LoginFailed(why);
    ExtraLoginFailed(c, why);
  };
  if (b.opcode() != Opcode::kLoginResponse || b.itt() != c.login_itt) {
    return fail(absl::FailedPreconditionError(
        absl::StrCat("unexpected PDU during login: ", pdu::DescribeBhs(b))));
  }
  c.exp_stat_sn = b.u32(pdu::field::kStatSn) + 1;
  c.login_text.append(pdu.data.begin(), pdu.data.end());
  uint8_t status_class = b.byte(pdu::field::kLoginStatusClass);
  if ((b.flags() & pdu::kFlagContinue) && status_class == 0) {
    // More text follows: ask for it with an empty request of the same stage.
    login::InitiatorRequest more = c.last_login_request;
    more.transit = false;
    more.text.clear();
    SendLoginRequest(c, more);
    c.last_login_request.text.clear();
    return;
  }
  login::LoginResponse rsp;
  rsp.csg = (b.flags() >> 2) & 3;
  rsp.nsg = b.flags() & 3;
  rsp.transit = b.flags() & pdu::kLoginFlagTransit;
  rsp.status_class = status_class;
  rsp.status_detail = b.byte(pdu::field::kLoginStatusDetail);
  rsp.text = std::move(c.login_text);
  c.login_text.clear();
  rsp.full_feature = rsp.transit && rsp.nsg == login::kFullFeaturePhase && status_class == 0;
  absl::StatusOr<std::optional<login::InitiatorRequest>> next = c.negotiator->OnResponse(rsp);
  if (!next.ok()) {
    return fail(absl::Status(next.status().code(),
                             absl::StrCat("login to ", config_.target_name, " at ", config_.portal,
                                          " failed: ", next.status().message())));
  }
  if (next->has_value()) {
    SendLoginRequest(c, **next);
    return;
  }
  if (!c.leading) return ExtraLoginDone(c, b);
  EnterFullFeature(b);
}

void Session::EnterFullFeature(const Bhs& final_response) {
  Connection& lead = *leading();
  CancelTimer(&lead.login_timer);
  tsih_ = final_response.u16(pdu::field::kTsih);
  params_ = lead.negotiator->params();
  lead.negotiator.reset();
  exp_cmd_sn_ = final_response.u32(pdu::field::kExpCmdSn);
  max_cmd_sn_ = final_response.u32(pdu::field::kMaxCmdSn);
  cmd_sn_ = exp_cmd_sn_;
  lead.transport->ApplyParams(params_);
  lead.ready = true;
  phase_ = Phase::kFullFeature;
  logout_requested_ = false;
  logout_sent_ = false;
  CancelTimer(&replacement_timer_);
  backoff_ = config_.reconnect_backoff_initial;
  fail_fast_ = false;
  const char* over = transport_kind_ == InitiatorTransportKind::kIser ? "iSER" : "iSCSI/TCP";
  if (ever_logged_in_) {
    ++reconnects_;
    ISER_LOG(kInfo, "session %s: reinstated at %s over %s, reissuing %d commands",
             config_.target_name, config_.portal, over, static_cast<int>(tasks_.size()));
  } else {
    ISER_LOG(kInfo, "session %s: logged in at %s over %s", config_.target_name, config_.portal,
             over);
  }
  ever_logged_in_ = true;
  if (config_.on_logged_in && transport_kind_) config_.on_logged_in(*transport_kind_);
  StartKeepAlive();
  AddConnections();
  MaybeFinishLogin();  // Login() completes once the extra connections are in (or failed)
  Pump();
}

void Session::LoginFailed(const absl::Status& why) {
  CloseTransport(why);
  if (!ever_logged_in_) {
    phase_ = Phase::kClosed;
    FailAll(why);
    if (login_done_) {
      StatusCallback done = std::move(login_done_);
      login_done_ = nullptr;
      done(why);
    }
    return;
  }
  ISER_LOG(kWarning, "session %s: reconnect to %s failed: %s", config_.target_name, config_.portal,
           why.ToString());
  phase_ = Phase::kRecovering;
  ScheduleReconnect();
}

void Session::CloseTransport(const absl::Status& why) {
  extras_pending_ = 0;
  ++connection_generation_;  // drops the answers of connects still in progress
  while (!conns_.empty()) CloseConnection(*conns_.back(), why);
}

void Session::CloseConnection(Connection& c, const absl::Status& why) {
  CancelTimer(&c.login_timer);
  CancelTimer(&c.ping_timer);
  if (!c.leading && !c.ready && extras_pending_ > 0) --extras_pending_;  // its login ends here
  for (auto& [itt, task] : tasks_) {
    if (task->connection == &c) task->connection = nullptr;
  }
  if (c.transport) {
    c.transport->SetEvents(nullptr);
    c.transport->Abort(why);
  }
  auto it = std::find_if(conns_.begin(), conns_.end(),
                         [&](const std::unique_ptr<Connection>& p) { return p.get() == &c; });
  if (it == conns_.end()) return;
  // Not from inside the transport's own callback: destroy both after this batch.
  Connection* raw = it->release();
  conns_.erase(it);
  loop_->Defer([raw] { delete raw; });
}

void Session::OnConnectionClosed(Connection& c, const absl::Status& why) {
  absl::Status reason = why.ok() ? absl::UnavailableError("connection closed by target") : why;
  if (!c.leading) {
    if (phase_ == Phase::kFullFeature && c.ready) return BeginRecovery(reason);  // ERL 0
    if (phase_ == Phase::kFullFeature) return ExtraLoginFailed(c, reason);
    return CloseConnection(c, reason);
  }
  switch (phase_) {
    case Phase::kLogin:
      LoginFailed(absl::UnavailableError(absl::StrCat("connection to ", config_.portal,
                                                      " lost during login: ", reason.message())));
      break;
    case Phase::kFullFeature:
      BeginRecovery(reason);
      break;
    case Phase::kLoggingOut:
      CloseTransport(reason);
      phase_ = Phase::kClosed;
      FailControls(absl::AbortedError("session logged out"));
      FailAll(absl::AbortedError("session logged out"));
      break;
    default:
      CloseTransport(reason);
      break;
  }
}

void Session::DropConnection(size_t index) {
  if (phase_ != Phase::kFullFeature) return;
  if (index == 0) return BeginRecovery(absl::UnavailableError("connection dropped"));
  if (index < conns_.size() && conns_[index]->transport) {
    conns_[index]->transport->Abort(absl::UnavailableError("connection dropped"));
  }
}

void Session::BeginRecovery(const absl::Status& why) {
  ISER_LOG(kWarning, "session %s: connection to %s lost (%s); recovering", config_.target_name,
           config_.portal, why.ToString());
  CloseTransport(why);
  CancelTimer(&keepalive_timer_);
  CancelTimer(&logout_deadline_timer_);
  phase_ = Phase::kRecovering;
  FailControls(absl::UnavailableError("connection lost"));
  RequeueIssued();
  if (config_.session_type == login::SessionType::kDiscovery) {
    phase_ = Phase::kClosed;
    FailAll(why);
    return;
  }
  if (replacement_timer_ == 0) {
    replacement_timer_ = After(config_.replacement_timeout, [this] {
      replacement_timer_ = 0;
      OnReplacementTimeout();
    });
  }
  ScheduleReconnect();
}

void Session::ScheduleReconnect() {
  CancelTimer(&reconnect_timer_);
  absl::Duration delay = backoff_;
  backoff_ = std::min(backoff_ * 2, config_.reconnect_backoff_max);
  reconnect_timer_ = After(delay, [this] {
    reconnect_timer_ = 0;
    if (phase_ == Phase::kRecovering) Connect();
  });
}

void Session::OnReplacementTimeout() {
  if (phase_ == Phase::kFullFeature) return;
  ISER_LOG(kError, "session %s: replacement timeout; failing %d commands", config_.target_name,
           static_cast<int>(tasks_.size()));
  fail_fast_ = true;
  FailAll(absl::UnavailableError(absl::StrCat("I/O error: no connection to ", config_.portal,
                                              " within the replacement timeout")));
}

void Session::FailAll(const absl::Status& why) {
  pending_.clear();
  std::vector<uint64_t> order;
  std::vector<std::pair<uint64_t, uint32_t>> all;
  for (auto& [itt, task] : tasks_) all.emplace_back(task->order, itt);
  std::sort(all.begin(), all.end());
  for (auto& [ord, itt] : all) Complete(itt, why);
}

void Session::Logout(StatusCallback done) {
  CancelTimer(&reconnect_timer_);
  CancelTimer(&replacement_timer_);
  if (phase_ != Phase::kFullFeature) {
    CancelTimer(&keepalive_timer_);
    CloseTransport(absl::AbortedError("logout"));
    phase_ = Phase::kClosed;
    FailControls(absl::AbortedError("session logged out"));
    FailAll(absl::AbortedError("session logged out"));
    done(absl::OkStatus());
    return;
  }
  phase_ = Phase::kLoggingOut;
  CancelTimer(&logout_deadline_timer_);
  CancelTimer(&keepalive_timer_);
  for (auto& c : conns_) CancelTimer(&c->ping_timer);
  logout_done_ = std::move(done);
  OutgoingPdu p;
  p.bhs = MakeRequest(Opcode::kLogoutRequest, pdu::kFlagFinal | 0 /* close session */, true);
  p.bhs.set_u16(pdu::field::kCid, 0);
  auto finish = [this](absl::Status s) {
    CloseTransport(absl::AbortedError("logged out"));
    phase_ = Phase::kClosed;
    FailControls(absl::AbortedError("session logged out"));
    FailAll(absl::AbortedError("session logged out"));
    if (logout_done_) {
      StatusCallback d = std::move(logout_done_);
      logout_done_ = nullptr;
      d(s);
    }
  };
  EventLoop::TimerId timer = After(config_.login_timeout, [this, finish] {
    if (phase_ == Phase::kLoggingOut) finish(absl::DeadlineExceededError("logout timed out"));
  });
  SendControl(std::move(p), [this, finish, timer](absl::StatusOr<pdu::ReceivedPdu> rsp) {
    loop_->CancelTimer(timer);
    if (phase_ != Phase::kLoggingOut) return;
    if (!rsp.ok()) return finish(absl::OkStatus());  // the connection closed: logged out too
    uint8_t response = rsp->bhs.byte(2);
    finish(response == 0 ? absl::OkStatus()
                         : absl::InternalError(absl::StrCat("logout response ", response)));
  });
}

SessionState Session::state() const {
  SessionState s;
  s.portal = config_.portal;
  s.initiator_name = config_.initiator_name;
  s.target_name = config_.target_name;
  s.isid = isid_;
  s.tsih = tsih_;
  s.cmd_sn = cmd_sn_;
  s.exp_stat_sn = leading() ? leading()->exp_stat_sn : 0;
  s.params = params_;
  return s;
}

void Discover(EventLoop* loop, SessionConfig config,
              absl::AnyInvocable<void(absl::StatusOr<std::vector<DiscoveredTarget>>)> done) {
  config.session_type = login::SessionType::kDiscovery;
  config.target_name.clear();
  config.nop_interval = absl::ZeroDuration();
  auto session = std::make_shared<std::unique_ptr<Session>>(
      std::make_unique<Session>(loop, std::move(config)));
  auto cb = std::make_shared<decltype(done)>(std::move(done));
  (*session)->Login([loop, session, cb](absl::Status s) {
    if (!s.ok()) {
      (*cb)(s);
      loop->Defer([session] { session->reset(); });
      return;
    }
    (*session)->SendTargets(
        [loop, session, cb](absl::StatusOr<std::vector<DiscoveredTarget>> targets) {
          (*session)->Logout([loop, session, cb, targets = std::move(targets)](absl::Status) {
            (*cb)(std::move(targets));
            loop->Defer([session] { session->reset(); });
          });
        });
  });
}

}  // namespace iser::initiator
