// Connection core: login phase and full-feature dispatch. SCSI data movement lives in
// connection_scsi.cc, task management / text / logout / NOP in connection_control.cc.
#include "iser/target/connection.h"

#include <algorithm>

#include "absl/strings/str_format.h"
#include "iser/base/logging.h"
#include "iser/target/target.h"

namespace iser::target {

using pdu::Bhs;
using pdu::Opcode;

const char* TransportKindName(TransportKind kind) {
  return kind == TransportKind::kIser ? "iser" : "tcp";
}

Connection::Connection(Target* target, std::unique_ptr<ConnectionTransport> transport, uint64_t id)
    : target_(target), loop_(target->loop()), transport_(std::move(transport)), id_(id) {}

Connection::~Connection() {
  if (nop_timer_ != 0) loop_->CancelTimer(nop_timer_);
  if (login_timer_ != 0) loop_->CancelTimer(login_timer_);
}

void Connection::Start() {
  last_activity_ = absl::Now();
  // A connection that never finishes logging in must not hold resources forever.
  login_timer_ = target_->loop()->RunAfter(target_->options().login_timeout, [this] {
    login_timer_ = 0;
    if (phase_ == Phase::kLogin) Close(absl::DeadlineExceededError("login timed out"));
  });
  transport_->SetEvents(this);
  ISER_LOG(kInfo, "conn %llu: %s connection from %s", static_cast<unsigned long long>(id_),
           TransportKindName(transport_->kind()), transport_->peer_address());
}

const login::OperationalParams& Connection::params() const {
  static const login::OperationalParams kDefaults;
  return session_ ? session_->params : kDefaults;
}

uint32_t Connection::max_send_segment() const {
  const auto& p = params();
  return p.rdma_extensions ? p.initiator_recv_dsl : p.initiator_max_recv_dsl;
}

void Connection::FillSequence(Bhs& bhs, bool advance_stat_sn) {
  if (advance_stat_sn) {
    bhs.set_stat_sn(stat_sn_++);
  } else {
    bhs.set_stat_sn(stat_sn_);
  }
  if (session_) {
    bhs.set_exp_cmd_sn(session_->exp_cmd_sn);
    bhs.set_max_cmd_sn(session_->max_cmd_sn());
  }
}

absl::Status Connection::CheckHeader(const Bhs& bhs) {
  if (phase_ == Phase::kLogin && bhs.opcode() != Opcode::kLoginRequest)
    return absl::InvalidArgumentError(absl::StrFormat("expected a Login Request, got opcode 0x%02x",
                                                      static_cast<int>(bhs.opcode())));
  return absl::OkStatus();
}

void Connection::OnPduReceived(pdu::ReceivedPdu pdu) { OnPduReceived(std::move(pdu), IoBuffer()); }

void Connection::OnPduReceived(pdu::ReceivedPdu pdu, IoBuffer data_buffer) {
  if (phase_ == Phase::kClosing || phase_ == Phase::kClosed) return;
  last_activity_ = absl::Now();
  if (phase_ == Phase::kLogin) {
    HandleLoginPdu(std::move(pdu));
  } else {
    HandleFfpPdu(std::move(pdu), std::move(data_buffer));
  }
}

void Connection::OnTransportClosed(const absl::Status& why) {
  if (phase_ == Phase::kClosed) return;
  ISER_LOG(kInfo, "conn %llu: closed (%s)", static_cast<unsigned long long>(id_),
           why.ok() ? "clean" : std::string(why.message()));
  phase_ = Phase::kClosed;
  target_->ConnectionClosed(this);
}

void Connection::Close(const absl::Status& why) {
  if (phase_ == Phase::kClosed) return;
  ISER_LOG(kInfo, "conn %llu: closing: %s", static_cast<unsigned long long>(id_),
           std::string(why.message()));
  phase_ = Phase::kClosing;
  transport_->Abort();  // reports OnTransportClosed
}

// ---------------------------------------------------------------------------- login

void Connection::SendLoginReject(const Bhs& req, uint8_t status_class, uint8_t status_detail) {
  login::LoginResponse rsp;
  rsp.csg = (req.flags() >> 2) & 3;
  rsp.nsg = 0;
  rsp.status_class = status_class;
  rsp.status_detail = status_detail;
  SendLoginResponse(req, rsp, 0);
  phase_ = Phase::kClosing;
  transport_->CloseAfterFlush();
}

void Connection::SendLoginResponse(const Bhs& req, const login::LoginResponse& rsp, uint16_t tsih) {
  OutgoingPdu out;
  out.bhs = Bhs::Make(Opcode::kLoginResponse, 0);
  std::string_view text = rsp.text;
  bool more = false;
  // The initiator accepts 8192 bytes per Login PDU until MaxRecvDataSegmentLength is
  // negotiated (RFC 7143 sec 13.12); longer answers continue with the C bit.
  constexpr size_t kLoginSegment = 8192;
  if (text.size() > kLoginSegment) {
    login_pending_out_ = std::string(text.substr(kLoginSegment));
    text = text.substr(0, kLoginSegment);
    more = true;
  }
  uint8_t flags = static_cast<uint8_t>((rsp.csg & 3) << 2);
  if (more) {
    flags |= pdu::kFlagContinue;
  } else if (rsp.transit) {
    flags |= pdu::kLoginFlagTransit | (rsp.nsg & 3);
  }
  out.bhs.set_flags(flags);
  out.bhs.set_byte(2, 0);  // version-max
  out.bhs.set_byte(3, 0);  // version-active
  out.bhs.set_u48(pdu::field::kIsid, login_isid_);
  out.bhs.set_u16(pdu::field::kTsih, tsih);
  out.bhs.set_itt(req.itt());
  out.bhs.set_byte(pdu::field::kLoginStatusClass, rsp.status_class);
  out.bhs.set_byte(pdu::field::kLoginStatusDetail, rsp.status_detail);
  out.SetOwnedData(std::vector<uint8_t>(text.begin(), text.end()));
  out.bhs.set_stat_sn(stat_sn_++);
  if (session_) {
    out.bhs.set_exp_cmd_sn(session_->exp_cmd_sn);
    out.bhs.set_max_cmd_sn(session_->max_cmd_sn());
  } else {
    out.bhs.set_exp_cmd_sn(req.cmd_sn());
    out.bhs.set_max_cmd_sn(req.cmd_sn() + target_->options().queue_depth - 1);
  }
  transport_->SendPdu(std::move(out));
}

void Connection::HandleLoginPdu(pdu::ReceivedPdu pdu) {
  const Bhs& req = pdu.bhs;
  if (req.opcode() != Opcode::kLoginRequest) {
    // Anything but a Login Request before full feature phase is a protocol error; the
    // connection is not logged in, so there is nobody to Reject to.
    Close(absl::InvalidArgumentError(
        absl::StrFormat("%s received during login", pdu::OpcodeName(req.opcode()))));
    return;
  }
  bool first = negotiator_ == nullptr;
  if (first) {
    login_isid_ = req.u48(pdu::field::kIsid);
    login_tsih_ = req.u16(pdu::field::kTsih);
    login_itt_ = req.itt();
    cid_ = req.u16(pdu::field::kCid);
    stat_sn_ = req.exp_stat_sn();
    uint8_t version_max = req.byte(2), version_min = req.byte(3);
    if (version_min > 0 || version_max < version_min) {
      SendLoginReject(req, 2, 0x05);  // unsupported version
      return;
    }
    if (target_->draining()) {
      SendLoginReject(req, 3, 0x01);  // service unavailable
      return;
    }
    std::optional<login::OperationalParams> session_params;
    if (login_tsih_ != 0) {
      Session* s = target_->FindSessionByTsih(login_tsih_);
      if (s == nullptr || s->isid != login_isid_) {
        SendLoginReject(req, 2, 0x0a);  // session does not exist
        return;
      }
      session_params = s->params;
    }
    login::TargetLoginConfig cfg;
    cfg.offer = target_->options().offer;
    cfg.target_portal_group_tag = target_->options().target_portal_group_tag;
    cfg.rdma_capable = transport_->kind() == TransportKind::kIser;
    if (cfg.rdma_capable) {
      // iSER: unsolicited data travels in Sends, each copied out of a receive buffer;
      // solicited data is an RDMA Read straight into the task buffer. So allow no more
      // unsolicited data than one Send carries (the immediate data): the rest of a write
      // is fetched, not pushed in TargetRecvDataSegmentLength pieces.
      cfg.offer.first_burst_length =
          std::min(cfg.offer.first_burst_length, std::max(cfg.offer.target_recv_dsl, 512u));
    }
    cfg.lookup_target =
        [target = target_](std::string_view name) -> std::optional<login::TargetNodeInfo> {
      TargetNode* node = target->FindNode(name);
      if (node == nullptr) return std::nullopt;
      return node->info;
    };
    // random_bytes left empty: the negotiator draws CHAP challenges from OpenSSL RAND_bytes.
    negotiator_ =
        std::make_unique<login::TargetNegotiator>(std::move(cfg), login_tsih_ == 0, session_params);
  } else if (req.u48(pdu::field::kIsid) != login_isid_ ||
             req.u16(pdu::field::kTsih) != login_tsih_ || req.itt() != login_itt_) {
    SendLoginReject(req, 2, 0x00);  // ISID/TSIH/ITT changed within one login
    return;
  }

  // Our own response continued with the C bit: the initiator asks for the rest.
  if (!login_pending_out_.empty()) {
    login::LoginResponse rsp;
    rsp.csg = (req.flags() >> 2) & 3;
    rsp.text = std::move(login_pending_out_);
    login_pending_out_.clear();
    SendLoginResponse(req, rsp, 0);
    return;
  }

  login_text_.append(reinterpret_cast<const char*>(pdu.data.data()), pdu.data.size());
  if (login_text_.size() > 64 * 1024) {
    SendLoginReject(req, 2, 0x00);
    return;
  }
  if (req.flags() & pdu::kFlagContinue) {
    // More text follows: acknowledge with an empty response in the same stage.
    login::LoginResponse rsp;
    rsp.csg = (req.flags() >> 2) & 3;
    SendLoginResponse(req, rsp, 0);
    return;
  }

  login::LoginRequest lreq;
  lreq.csg = (req.flags() >> 2) & 3;
  lreq.nsg = req.flags() & 3;
  lreq.transit = req.flags() & pdu::kLoginFlagTransit;
  lreq.text = login_text_;
  login::LoginResponse rsp = negotiator_->Step(lreq);
  login_text_.clear();
  if (rsp.failed()) {
    ISER_LOG(kWarning, "conn %llu: login from %s refused: status 0x%02x%02x",
             static_cast<unsigned long long>(id_), transport_->peer_address(), rsp.status_class,
             rsp.status_detail);
    SendLoginResponse(req, rsp, 0);
    phase_ = Phase::kClosing;
    transport_->CloseAfterFlush();
    return;
  }
  if (!rsp.full_feature) {
    SendLoginResponse(req, rsp, login_tsih_);
    return;
  }
  if (!CompleteLogin(req)) return;
  SendLoginResponse(req, rsp, session_->tsih);
  transport_->ApplyParams(session_->params);
  const login::OperationalParams& p = session_->params;
  ISER_LOG(kInfo,
           "conn %llu: full feature phase: HeaderDigest=%s DataDigest=%s InitialR2T=%s "
           "ImmediateData=%s MaxRecvDSL(i/t)=%u/%u MaxBurst=%u FirstBurst=%u MaxOutR2T=%u "
           "MaxConnections=%u",
           static_cast<unsigned long long>(id_), p.header_digest ? "CRC32C" : "None",
           p.data_digest ? "CRC32C" : "None", p.initial_r2t ? "Yes" : "No",
           p.immediate_data ? "Yes" : "No", p.initiator_max_recv_dsl, p.target_max_recv_dsl,
           p.max_burst_length, p.first_burst_length, p.max_outstanding_r2t, p.max_connections);
  phase_ = Phase::kFullFeature;
  negotiator_.reset();
  if (login_timer_ != 0) {
    target_->loop()->CancelTimer(login_timer_);
    login_timer_ = 0;
  }
  ArmNopTimer();
}

bool Connection::CompleteLogin(const Bhs& req) {
  const login::OperationalParams& params = negotiator_->params();
  if (login_tsih_ == 0) {
    // Session reinstatement (RFC 7143 sec 6.3.5): same initiator port and target as an
    // existing session closes the old one.
    if (Session* old = target_->FindSessionByIsid(login_isid_, negotiator_->initiator_name(),
                                                  negotiator_->target_name())) {
      ISER_LOG(kInfo, "conn %llu: reinstating session tsih=%u",
               static_cast<unsigned long long>(id_), old->tsih);
      target_->DestroySession(old);
    }
    Session* s = target_->CreateSession();
    s->isid = login_isid_;
    s->initiator_name = negotiator_->initiator_name();
    s->initiator_alias = negotiator_->initiator_alias();
    s->type = negotiator_->session_type();
    s->params = params;
    s->exp_cmd_sn = req.cmd_sn();
    s->window = target_->options().queue_depth;
    if (s->type == login::SessionType::kNormal) {
      s->node = target_->FindNode(negotiator_->target_name());
      if (s->node == nullptr) {
        target_->DestroySession(s);
        SendLoginReject(req, 2, 0x03);
        return false;
      }
    }
    s->nexus.id = s->id;
    s->nexus.initiator_name = s->initiator_name;
    s->nexus.isid = s->isid;
    s->nexus.initiator_port = absl::StrFormat("%s,i,0x%012x", s->initiator_name,
                                              static_cast<unsigned long long>(s->isid));
    s->nexus.target_portal_group_tag = target_->options().target_portal_group_tag;
    s->nexus.relative_target_port = 1;
    session_ = s;
    s->connections.push_back(this);
    if (s->node) s->node->device->NexusCreated(s->nexus);
    ISER_LOG(kInfo, "conn %llu: %s session tsih=%u initiator=%s target=%s over %s",
             static_cast<unsigned long long>(id_),
             s->type == login::SessionType::kDiscovery ? "discovery" : "normal", s->tsih,
             s->initiator_name, s->node ? s->node->info.name : "-",
             TransportKindName(transport_->kind()));
    return true;
  }
  Session* s = target_->FindSessionByTsih(login_tsih_);
  if (s == nullptr || s->initiator_name != negotiator_->initiator_name()) {
    SendLoginReject(req, 2, 0x0a);
    return false;
  }
  // Connection reinstatement: a new login with the CID of a live connection replaces it.
  for (Connection* c : std::vector<Connection*>(s->connections)) {
    if (c->cid_ == cid_) c->Close(absl::AbortedError("connection reinstated"));
  }
  if (s->connections.size() >= s->params.max_connections) {
    SendLoginReject(req, 2, 0x06);  // too many connections
    return false;
  }
  session_ = s;
  s->connections.push_back(this);
  ISER_LOG(kInfo, "conn %llu: joined session tsih=%u as cid %u (%zu connections)",
           static_cast<unsigned long long>(id_), s->tsih, cid_, s->connections.size());
  return true;
}

void Connection::DetachFromSession() { session_ = nullptr; }

// ---------------------------------------------------------------------- full feature

void Connection::HandleFfpPdu(pdu::ReceivedPdu pdu, IoBuffer data_buffer) {
  if (!pdu.data_digest_ok) {
    // The data can't be trusted but the header can: Reject and carry on (the initiator
    // retries or fails the command).
    SendReject(pdu.bhs, pdu::RejectReason::kDataDigestError);
    return;
  }
  switch (pdu.bhs.opcode()) {
    case Opcode::kDataOut:
      if (HoldDataOutOfHeldCommand(pdu, data_buffer)) return;
      HandleDataOut(std::move(pdu));  // copies what is not in the task already
      return;
    case Opcode::kScsiCommand:
    case Opcode::kNopOut:
    case Opcode::kTaskMgmtRequest:
    case Opcode::kTextRequest:
    case Opcode::kLogoutRequest:
      if (!CheckCmdSn(pdu, data_buffer)) return;
      Dispatch(std::move(pdu), std::move(data_buffer));
      // Commands that arrived early on other connections may now be in order.
      while (session_ && !session_->reorder.empty() &&
             session_->reorder.begin()->first == session_->exp_cmd_sn) {
        auto node = session_->reorder.extract(session_->reorder.begin());
        session_->exp_cmd_sn++;
        Connection* conn = node.mapped().conn;
        conn->Dispatch(std::move(node.mapped().pdu), std::move(node.mapped().data_buffer));
        for (Session::Pending::HeldDataOut& data : node.mapped().data_out)
          conn->HandleDataOut(std::move(data.pdu));
      }
      return;
    case Opcode::kSnackRequest:
      // ErrorRecoveryLevel 0: SNACK is not supported (RFC 7143 sec 11.16).
      SendReject(pdu.bhs, pdu::RejectReason::kProtocolError);
      return;
    case Opcode::kLoginRequest:
      SendReject(pdu.bhs, pdu::RejectReason::kProtocolError);
      return;
    default:
      SendReject(pdu.bhs, pdu::RejectReason::kCommandNotSupported);
      return;
  }
}

bool Connection::CheckCmdSn(pdu::ReceivedPdu& pdu, IoBuffer& data_buffer) {
  if (session_ == nullptr) return false;
  if (pdu.bhs.immediate()) return true;  // immediate PDUs carry but do not consume CmdSN
  uint32_t sn = pdu.bhs.cmd_sn();
  if (sn == session_->exp_cmd_sn) {
    session_->exp_cmd_sn++;
    return true;
  }
  if (pdu::SnLess(session_->exp_cmd_sn, sn) && pdu::SnLessEq(sn, session_->max_cmd_sn())) {
    // Ahead of a gap (another connection's command is still on its way): hold it.
    // Moving keeps `data` valid: it points into the vector's heap block or into
    // `data_buffer`, whose memory does not move with it.
    session_->reorder.try_emplace(
        sn, Session::Pending{this, std::move(pdu), std::move(data_buffer), {}});
    return false;
  }
  // Outside the window: silently ignored (RFC 7143 sec 3.2.2.1).
  ISER_LOG(kDebug, "conn %llu: dropping %s with CmdSN %u outside [%u, %u]",
           static_cast<unsigned long long>(id_), pdu::OpcodeName(pdu.bhs.opcode()), sn,
           session_->exp_cmd_sn, session_->max_cmd_sn());
  return false;
}

bool Connection::HoldDataOutOfHeldCommand(pdu::ReceivedPdu& pdu, IoBuffer& data_buffer) {
  // With several connections a command can wait for CmdSN order while its unsolicited
  // Data-Out, which has no CmdSN, arrives right behind it; dropping that data would leave
  // the command waiting for it forever.
  if (session_ == nullptr || session_->reorder.empty() || session_->tasks.count(pdu.bhs.itt())) {
    return false;
  }
  for (auto& [sn, held] : session_->reorder) {
    if (held.conn == this && held.pdu.bhs.opcode() == Opcode::kScsiCommand &&
        held.pdu.bhs.itt() == pdu.bhs.itt()) {
      held.data_out.push_back({std::move(pdu), std::move(data_buffer)});
      return true;
    }
  }
  return false;
}

void Connection::Dispatch(pdu::ReceivedPdu pdu, IoBuffer data_buffer) {
  if (phase_ != Phase::kFullFeature || session_ == nullptr) return;
  if (session_->type == login::SessionType::kDiscovery) {
    // Discovery sessions carry only Text, Logout and NOP (RFC 7143 sec 4.3).
    Opcode op = pdu.bhs.opcode();
    if (op != Opcode::kTextRequest && op != Opcode::kLogoutRequest && op != Opcode::kNopOut) {
      SendReject(pdu.bhs, pdu::RejectReason::kProtocolError);
      return;
    }
  }
  switch (pdu.bhs.opcode()) {
    case Opcode::kScsiCommand:
      HandleScsiCommand(std::move(pdu), std::move(data_buffer));
      break;
    case Opcode::kNopOut:
      HandleNopOut(std::move(pdu));
      break;
    case Opcode::kTaskMgmtRequest:
      HandleTaskMgmt(std::move(pdu));
      break;
    case Opcode::kTextRequest:
      HandleTextRequest(std::move(pdu));
      break;
    case Opcode::kLogoutRequest:
      HandleLogout(std::move(pdu));
      break;
    default:
      break;
  }
}

void Connection::SendReject(const Bhs& rejected, pdu::RejectReason reason) {
  OutgoingPdu out;
  out.bhs = Bhs::Make(Opcode::kReject);
  out.bhs.set_byte(2, static_cast<uint8_t>(reason));
  out.bhs.set_itt(pdu::kReservedTag);
  FillSequence(out.bhs, true);
  out.SetOwnedData(std::vector<uint8_t>(rejected.data(), rejected.data() + pdu::kBhsSize));
  ISER_LOG(kWarning, "conn %llu: Reject reason 0x%02x for %s", static_cast<unsigned long long>(id_),
           static_cast<int>(reason), pdu::DescribeBhs(rejected));
  transport_->SendPdu(std::move(out));
}

}  // namespace iser::target
