#include "iser/transport/rdma/softiwarp/qp.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>

#include <algorithm>
#include <cstring>

#include "iser/base/logging.h"

namespace iser::softiwarp {

using rdma::WcOpcode;
using rdma::WcStatus;
using rdma::WrOpcode;

namespace {

WcOpcode WcOpcodeFor(WrOpcode op) {
  switch (op) {
    case WrOpcode::kRdmaWrite:
      return WcOpcode::kRdmaWrite;
    case WrOpcode::kRdmaRead:
      return WcOpcode::kRdmaRead;
    case WrOpcode::kLocalInv:
      return WcOpcode::kLocalInv;
    default:
      return WcOpcode::kSend;
  }
}

TermError UntaggedError(uint8_t code) {
  return MakeTermError(TermLayer::kDdp, kDdpEtypeUntagged, code);
}

TermError TaggedError(uint8_t code) {
  return MakeTermError(TermLayer::kDdp, kDdpEtypeTagged, code);
}

TermError RemoteOpError(uint8_t code) {
  return MakeTermError(TermLayer::kRdmap, kRdmapEtypeRemoteOperation, code);
}

}  // namespace

SoftQp::SoftQp(SoftPd* pd, const rdma::QpInitAttr& attr)
    : pd_(pd),
      dev_(pd->device()),
      send_cq_(static_cast<SoftCq*>(attr.send_cq)),
      recv_cq_(static_cast<SoftCq*>(attr.recv_cq)),
      cap_(attr.cap),
      sq_sig_all_(attr.sq_sig_all),
      qpn_(pd->device()->NextQpn()),
      rx_(this, false) {}

SoftQp::~SoftQp() {
  if (registered_) dev_->loop()->RemoveFd(fd_.get());
}

// ---------------------------------------------------------------- posting

absl::Status SoftQp::PostSend(const rdma::SendWr& wr) {
  switch (wr.opcode) {
    case WrOpcode::kSend:
    case WrOpcode::kSendWithInv:
    case WrOpcode::kRdmaWrite:
    case WrOpcode::kLocalInv:
      break;
    case WrOpcode::kRdmaRead:
      if (wr.sg_list.size() != 1) return absl::InvalidArgumentError("RDMA Read needs one SGE");
      break;
    default:
      return absl::InvalidArgumentError("unsupported opcode");
  }
  if (wr.sg_list.size() > cap_.max_send_sge) return absl::InvalidArgumentError("too many SGEs");
  if (state_ != rdma::QpState::kRts && state_ != rdma::QpState::kError &&
      state_ != rdma::QpState::kSqe)
    return absl::FailedPreconditionError("QP not connected");
  if (wr.opcode == WrOpcode::kRdmaRead && state_ == rdma::QpState::kRts && params_.ord == 0)
    return absl::InvalidArgumentError("RDMA Read with ORD 0");
  if (sq_.size() >= cap_.max_send_wr) return absl::ResourceExhaustedError("send queue full");
  auto w = std::make_unique<SqWqe>();
  w->wr_id = wr.wr_id;
  w->opcode = wr.opcode;
  w->flags = wr.send_flags;
  w->sges.assign(wr.sg_list.begin(), wr.sg_list.end());
  w->inv_rkey = wr.invalidate_rkey;
  w->remote_addr = wr.remote_addr;
  w->rkey = wr.rkey;
  for (const rdma::Sge& s : w->sges) w->total += s.length;
  if (w->total > UINT32_MAX) return absl::InvalidArgumentError("message larger than 4 GiB");
  if (state_ == rdma::QpState::kError) {
    w->st = SqWqe::St::kDone;
    w->status = WcStatus::kWrFlushErr;
    sq_.push_back(std::move(w));
    ReapSq();
    return absl::OkStatus();
  }
  sq_.push_back(std::move(w));
  if (!registered_) {
    TxPump();  // driven by hand (tests, fuzzer): transmit now
  } else if (!tx_pump_scheduled_) {
    // Doorbell batching: everything posted while the loop handles this batch of events
    // (e.g. the RDMA Write of read data and the SCSI Response after it) leaves in one
    // writev just before the loop sleeps again.
    tx_pump_scheduled_ = true;
    std::weak_ptr<int> alive = life_;
    dev_->loop()->Defer([this, alive] {
      if (alive.expired()) return;
      tx_pump_scheduled_ = false;
      TxPump();
    });
  }
  return absl::OkStatus();
}

absl::Status SoftQp::PostRecv(const rdma::RecvWr& wr) {
  if (wr.sg_list.size() > cap_.max_recv_sge) return absl::InvalidArgumentError("too many SGEs");
  if (rq_.size() >= cap_.max_recv_wr) return absl::ResourceExhaustedError("receive queue full");
  RqWqe r;
  r.wr_id = wr.wr_id;
  for (const rdma::Sge& s : wr.sg_list) {
    if (s.length == 0) continue;
    if (dev_->mrs().Check(s.lkey, pd_->id(), s.addr, s.length, rdma::kAccessLocalWrite) !=
        MrCheck::kOk) {
      r.status = WcStatus::kLocProtErr;  // reported when a message arrives for it
      continue;
    }
    r.buf.push_back({reinterpret_cast<void*>(s.addr), s.length});
    r.total += s.length;
  }
  if (state_ == rdma::QpState::kError) {
    recv_cq_->Push({r.wr_id, WcStatus::kWrFlushErr, WcOpcode::kRecv, 0, 0, 0, qpn_, 0}, false);
    return absl::OkStatus();
  }
  rq_.push_back(std::move(r));
  return absl::OkStatus();
}

absl::Status SoftQp::MoveToError() {
  CloseConnection(WcStatus::kWrFlushErr);
  return absl::OkStatus();
}

void SoftQp::Disconnect() { CloseConnection(WcStatus::kWrFlushErr); }

// ---------------------------------------------------------------- connection

absl::Status SoftQp::Start(UniqueFd fd, const QpConnParams& params,
                           absl::AnyInvocable<void()> on_closed) {
  fd_ = std::move(fd);
  fd_io_ = std::make_unique<FdByteIo>(fd_.get());
  QpConnParams p = params;
  if (!p.current_emss && dev_->options().mulpdu == 0) {
    p.current_emss = [fd = fd_.get()]() -> uint32_t {
      int mss = 0;
      socklen_t len = sizeof(mss);
      if (getsockopt(fd, IPPROTO_TCP, TCP_MAXSEG, &mss, &len) != 0 || mss <= 0) return 0;
      return static_cast<uint32_t>(mss);
    };
  }
  fd_rx_ = std::make_unique<StagedFdSource>(fd_.get());
  on_closed_ = std::move(on_closed);
  StartWithIo(fd_rx_.get(), fd_io_.get(), p);
  absl::Status s = dev_->loop()->AddFd(fd_.get(), EPOLLIN, [this](uint32_t events) {
    if (events & (EPOLLIN | EPOLLHUP | EPOLLERR)) OnReadable();
    if ((events & EPOLLOUT) && !closed_) OnWritable();
  });
  if (!s.ok()) return s;
  registered_ = true;
  TxPump();
  return absl::OkStatus();
}

void SoftQp::StartWithIo(ByteSource* src, ByteSink* sink, const QpConnParams& params) {
  params_ = params;
  params_.mulpdu = std::max<uint32_t>(params_.mulpdu, 128);
  src_ = src;
  sink_ = sink;
  rx_.set_crc_enabled(params.crc);
  tx_hold_ = params.hold_tx_until_rx;
  state_ = rdma::QpState::kRts;
}

void SoftQp::OnWritable() { TxPump(); }

void SoftQp::OnReadable() {
  if (rx_dead_ || closed_ || src_ == nullptr) return;
  rx_in_pump_ = true;
  RxMachine::Outcome o = rx_.Pump(*src_);
  rx_in_pump_ = false;
  switch (o) {
    case RxMachine::Outcome::kWouldBlock:
      break;
    case RxMachine::Outcome::kEof:
    case RxMachine::Outcome::kIoError:
      CloseConnection(WcStatus::kWrFlushErr);
      return;
    case RxMachine::Outcome::kProtocolError:
      ISER_LOG(kWarning, "softiwarp qp %u: protocol error, sending Terminate (%s)", qpn_,
               TermErrorString(rx_.error().layer, rx_.error().etype, rx_.error().ecode));
      FailWithTerminate(rx_.error(), rx_.offending_header());
      return;
    case RxMachine::Outcome::kStopped:
      if (term_received_) OnPeerTerminate();
      return;
  }
  TxPump();
}

void SoftQp::SetWantWrite(bool want) {
  if (want == want_write_) return;
  want_write_ = want;
  UpdateInterest();
}

void SoftQp::UpdateInterest() {
  if (!registered_) return;
  uint32_t events = (rx_dead_ ? 0 : EPOLLIN) | (want_write_ ? EPOLLOUT : 0);
  (void)dev_->loop()->ModifyFd(fd_.get(), events);
}

// ---------------------------------------------------------------- transmit

bool SoftQp::ResolveLocal(SqWqe& w, uint32_t access) {
  w.local.clear();
  for (const rdma::Sge& s : w.sges) {
    if (s.length == 0) continue;
    if (dev_->mrs().Check(s.lkey, pd_->id(), s.addr, s.length, access) != MrCheck::kOk)
      return false;
    w.local.push_back({reinterpret_cast<void*>(s.addr), s.length});
  }
  return true;
}

bool SoftQp::PickNext() {
  if (!term_pending_.empty()) {
    tx_kind_ = TxKind::kTerminate;
    return true;
  }
  if (tx_hold_ || rx_dead_) return false;
  if (params_.send_rtr != kRtrNone) {
    tx_kind_ = TxKind::kRtr;
    return true;
  }
  while (!irq_.empty()) {
    IrqEntry& e = irq_.front();
    // Re-check the source: the peer may have invalidated it since the request.
    if (e.length > 0 && dev_->mrs().Check(e.src_stag, pd_->id(), e.src_to, e.length,
                                          rdma::kAccessRemoteRead) != MrCheck::kOk) {
      FailWithTerminate(ReadSourceTermError(MrCheck::kInvalidated), {});
      tx_kind_ = TxKind::kTerminate;
      return true;
    }
    if (e.sent == 0) RefreshMulpdu(e.length);
    tx_kind_ = TxKind::kReadResponse;
    return true;
  }
  while (sq_next_ < sq_.size()) {
    SqWqe& w = *sq_[sq_next_];
    if (w.opcode == WrOpcode::kLocalInv) {
      MrCheck c = dev_->mrs().Invalidate(w.inv_rkey, pd_->id());
      w.status = c == MrCheck::kOk ? WcStatus::kSuccess : WcStatus::kLocProtErr;
      w.st = SqWqe::St::kDone;
      ++sq_next_;
      ReapSq();
      continue;
    }
    if (w.opcode == WrOpcode::kRdmaRead && orq_.size() >= params_.ord) return false;
    uint32_t access = w.opcode == WrOpcode::kRdmaRead ? rdma::kAccessLocalWrite : 0;
    if (!ResolveLocal(w, access)) {
      w.status = WcStatus::kLocProtErr;
      w.st = SqWqe::St::kDone;
      ++sq_next_;
      FailWithTerminate(MakeTermError(TermLayer::kRdmap, kRdmapEtypeCatastrophic, 0), {});
      tx_kind_ = TxKind::kTerminate;
      return true;
    }
    w.st = SqWqe::St::kActive;
    w.progress = 0;
    if (w.opcode != WrOpcode::kRdmaRead) RefreshMulpdu(w.total);
    ++sq_next_;
    tx_wqe_ = &w;
    tx_offset_ = 0;
    tx_kind_ = TxKind::kSq;
    if (w.opcode == WrOpcode::kRdmaRead) {
      orq_.push_back(&w);
      max_orq_ = std::max(max_orq_, orq_.size());
    }
    return true;
  }
  return false;
}

void SoftQp::RefreshMulpdu(uint64_t message_bytes) {
  // MULPDU follows the EMSS (RFC 5044 sec 4.5), and TCP's MSS is not fixed: Linux bounds
  // it by half the peer's largest window seen, so at connect time on loopback it reads
  // 32,741 and later up to 65,483, and a path MTU change lowers it. Like Linux siw we read
  // it again before each message, but only for messages of 16 KiB or more, or that need
  // more than one FPDU: one getsockopt per 4 KiB Send would cost more than it can save.
  // On loopback this takes 128 KiB from five FPDUs to three.
  if (!params_.current_emss) return;
  if (message_bytes < 16384 && message_bytes + sizeof(TaggedHdr) <= params_.mulpdu) return;
  uint32_t emss = params_.current_emss();
  if (emss > 0) params_.mulpdu = std::max<uint32_t>(MulpduForEmss(emss), 128);
}

void SoftQp::PrepareNextFpdu() {
  scratch_.clear();
  switch (tx_kind_) {
    case TxKind::kTerminate:
      writer_.Prepare(term_pending_, {}, params_.crc);
      tx_last_fpdu_ = true;
      return;
    case TxKind::kRtr: {
      TaggedHdr t{};  // zero-length RDMA Write, STag/TO not checked (RFC 5041 5.2)
      t.ctrl.ddp_ctrl = OpInfoOf(RdmapOpcode::kRdmaWrite).ddp_ctrl;
      t.ctrl.rdmap_ctrl = OpInfoOf(RdmapOpcode::kRdmaWrite).rdmap_ctrl;
      writer_.Prepare({reinterpret_cast<uint8_t*>(&t), sizeof(t)}, {}, params_.crc);
      tx_last_fpdu_ = true;
      return;
    }
    case TxKind::kReadResponse: {
      IrqEntry& e = irq_.front();
      uint32_t max = params_.mulpdu - (sizeof(TaggedHdr) - kMpaLengthSize);
      uint32_t n = std::min(e.length - e.sent, max);
      bool last = e.sent + n == e.length;
      TaggedHdr t{};
      t.ctrl.ddp_ctrl = kDdpFlagTagged | kDdpVersion | (last ? kDdpFlagLast : 0);
      t.ctrl.rdmap_ctrl = OpInfoOf(RdmapOpcode::kReadResponse).rdmap_ctrl;
      t.stag.set(e.sink_stag);
      t.to.set(e.sink_to + e.sent);
      if (n > 0) scratch_.push_back({e.src + e.sent, n});
      e.sent += n;
      writer_.Prepare({reinterpret_cast<uint8_t*>(&t), sizeof(t)}, scratch_, params_.crc);
      tx_last_fpdu_ = last;
      return;
    }
    case TxKind::kSq:
      break;
    case TxKind::kNone:
      return;
  }
  SqWqe& w = *tx_wqe_;
  if (w.opcode == WrOpcode::kRdmaRead) {
    ReadRequestHdr r{};
    r.ddp.ctrl.ddp_ctrl = OpInfoOf(RdmapOpcode::kReadRequest).ddp_ctrl;
    r.ddp.ctrl.rdmap_ctrl = OpInfoOf(RdmapOpcode::kReadRequest).rdmap_ctrl;
    r.ddp.qn.set(kQnReadRequest);
    r.ddp.msn.set(tx_msn_[kQnReadRequest]);
    r.ddp.mo.set(0);
    r.sink_stag.set(w.sges[0].lkey);
    r.sink_to.set(w.sges[0].addr);
    r.read_size.set(static_cast<uint32_t>(w.total));
    r.src_stag.set(w.rkey);
    r.src_to.set(w.remote_addr);
    writer_.Prepare({reinterpret_cast<uint8_t*>(&r), sizeof(r)}, {}, params_.crc);
    tx_last_fpdu_ = true;
    return;
  }
  bool tagged = w.opcode == WrOpcode::kRdmaWrite;
  uint32_t hdr_len = tagged ? sizeof(TaggedHdr) : sizeof(UntaggedHdr);
  uint64_t max = params_.mulpdu - (hdr_len - kMpaLengthSize);
  uint64_t n = std::min<uint64_t>(w.total - tx_offset_, max);
  bool last = tx_offset_ + n == w.total;
  SliceIov(w.local, tx_offset_, n, &scratch_);
  uint8_t ddp = kDdpVersion | (last ? kDdpFlagLast : 0);
  if (tagged) {
    TaggedHdr t{};
    t.ctrl.ddp_ctrl = ddp | kDdpFlagTagged;
    t.ctrl.rdmap_ctrl = OpInfoOf(RdmapOpcode::kRdmaWrite).rdmap_ctrl;
    t.stag.set(w.rkey);
    t.to.set(w.remote_addr + tx_offset_);
    writer_.Prepare({reinterpret_cast<uint8_t*>(&t), sizeof(t)}, scratch_, params_.crc);
  } else {
    bool inv = w.opcode == WrOpcode::kSendWithInv;
    bool se = w.flags & rdma::kSendSolicited;
    RdmapOpcode op = inv ? (se ? RdmapOpcode::kSendSeInv : RdmapOpcode::kSendInv)
                         : (se ? RdmapOpcode::kSendSe : RdmapOpcode::kSend);
    UntaggedHdr u{};
    u.ctrl.ddp_ctrl = ddp;
    u.ctrl.rdmap_ctrl = OpInfoOf(op).rdmap_ctrl;
    u.inval_stag.set(inv ? w.inv_rkey : 0);
    u.qn.set(kQnSend);
    u.msn.set(tx_msn_[kQnSend]);
    u.mo.set(static_cast<uint32_t>(tx_offset_));
    writer_.Prepare({reinterpret_cast<uint8_t*>(&u), sizeof(u)}, scratch_, params_.crc);
  }
  tx_offset_ += n;
  w.progress = tx_offset_;
  tx_last_fpdu_ = last;
}

void SoftQp::OnMessageSent() {
  TxKind kind = tx_kind_;
  tx_kind_ = TxKind::kNone;
  switch (kind) {
    case TxKind::kTerminate:
      term_pending_.clear();
      if (close_after_tx_) {
        WcStatus st = WcStatus::kWrFlushErr;
        CloseConnection(st);
      }
      return;
    case TxKind::kRtr:
      params_.send_rtr = kRtrNone;
      return;
    case TxKind::kReadResponse:
      irq_.pop_front();
      return;
    case TxKind::kSq: {
      SqWqe& w = *tx_wqe_;
      tx_wqe_ = nullptr;
      if (w.opcode == WrOpcode::kRdmaRead) {
        ++tx_msn_[kQnReadRequest];
        if (w.st == SqWqe::St::kActive) w.st = SqWqe::St::kAwaitResponse;
      } else {
        if (w.opcode != WrOpcode::kRdmaWrite) ++tx_msn_[kQnSend];
        w.st = SqWqe::St::kDone;
        w.status = WcStatus::kSuccess;
        ReapSq();
      }
      return;
    }
    case TxKind::kNone:
      return;
  }
}

void SoftQp::TxPump() {
  if (tx_in_pump_ || closed_ || sink_ == nullptr || rx_in_pump_) return;
  tx_in_pump_ = true;
  for (;;) {
    // Fill the batch: FPDUs of as many messages as fit, in order.
    while (writer_.CanAppend() && !batch_solo_) {
      // A Terminate preempts the current message at an FPDU boundary.
      if (!term_pending_.empty() && tx_kind_ != TxKind::kTerminate) {
        if (writer_.busy()) break;  // send what is batched first
        tx_kind_ = TxKind::kTerminate;
      }
      if (tx_kind_ == TxKind::kNone && !PickNext()) break;
      if (tx_kind_ == TxKind::kTerminate || tx_kind_ == TxKind::kRtr) {
        if (writer_.busy()) break;
        PrepareNextFpdu();
        batch_solo_ = true;
        break;
      }
      PrepareNextFpdu();
      if (tx_last_fpdu_) OnMessagePrepared();
      if (closed_) break;
    }
    if (closed_) break;
    if (!writer_.busy()) {
      SetWantWrite(false);
      break;
    }
    FpduWriter::Result r = writer_.Flush(*sink_);
    if (r == FpduWriter::Result::kWouldBlock) {
      SetWantWrite(true);
      break;
    }
    if (r == FpduWriter::Result::kError) {
      tx_in_pump_ = false;
      CloseConnection(WcStatus::kWrFlushErr);
      return;
    }
    if (batch_solo_) {
      batch_solo_ = false;
      OnMessageSent();
    } else {
      CompleteWritten();
    }
    if (closed_) break;
  }
  tx_in_pump_ = false;
}

void SoftQp::OnMessagePrepared() {
  TxKind kind = tx_kind_;
  tx_kind_ = TxKind::kNone;
  if (kind == TxKind::kReadResponse) {
    irq_.pop_front();
    return;
  }
  if (kind != TxKind::kSq) return;
  SqWqe& w = *tx_wqe_;
  tx_wqe_ = nullptr;
  if (w.opcode == WrOpcode::kRdmaRead) {
    ++tx_msn_[kQnReadRequest];
    if (w.st == SqWqe::St::kActive) w.st = SqWqe::St::kAwaitResponse;
    return;
  }
  if (w.opcode != WrOpcode::kRdmaWrite) ++tx_msn_[kQnSend];
  written_pending_.push_back(&w);
}

void SoftQp::CompleteWritten() {
  if (written_pending_.empty()) return;
  for (SqWqe* w : written_pending_) {
    w->st = SqWqe::St::kDone;
    w->status = WcStatus::kSuccess;
  }
  written_pending_.clear();
  ReapSq();
}

// ---------------------------------------------------------------- receive

std::optional<TermError> SoftQp::OnSegmentHeader(const RxSegment& seg, std::vector<iovec>* dst) {
  if (!first_rx_seen_) {
    first_rx_seen_ = true;
    tx_hold_ = false;  // RFC 5044 7.1.2: the responder may send after the first FPDU
  }
  const uint32_t len = seg.payload_len;
  switch (seg.op) {
    case RdmapOpcode::kRdmaWrite: {
      if (len == 0) return std::nullopt;  // zero-length: STag/TO not checked
      auto t = seg.As<TaggedHdr>();
      uint64_t to = t.to.get();
      MrCheck c = dev_->mrs().Check(t.stag.get(), pd_->id(), to, len, rdma::kAccessRemoteWrite);
      if (c != MrCheck::kOk) return TaggedTermError(c);
      dst->push_back({reinterpret_cast<void*>(to), len});
      return std::nullopt;
    }
    case RdmapOpcode::kReadResponse: {
      if (orq_.empty()) return RemoteOpError(kRdmapEcodeOpcode);
      SqWqe& w = *orq_.front();
      auto t = seg.As<TaggedHdr>();
      if (t.stag.get() != w.sges[0].lkey) return TaggedError(kDdpEcodeTInvalidStag);
      if (t.to.get() != w.sges[0].addr + w.progress) return TaggedError(kDdpEcodeTBaseBounds);
      if (w.progress + len > w.total || (seg.last && w.progress + len != w.total))
        return TaggedError(kDdpEcodeTBaseBounds);
      SliceIov(w.local, w.progress, len, dst);
      return std::nullopt;
    }
    case RdmapOpcode::kSend:
    case RdmapOpcode::kSendInv:
    case RdmapOpcode::kSendSe:
    case RdmapOpcode::kSendSeInv: {
      auto u = seg.As<UntaggedHdr>();
      if (u.qn.get() != kQnSend) return UntaggedError(kDdpEcodeUtInvalidQn);
      if (u.msn.get() != rx_msn_[kQnSend]) return UntaggedError(kDdpEcodeUtMsnRange);
      RqWqe* r = rq_.empty() ? nullptr : &rq_.front();
      if (r == nullptr || !r->active) {
        if (u.mo.get() != 0) return UntaggedError(kDdpEcodeUtInvalidMo);
        if (r == nullptr) return UntaggedError(kDdpEcodeUtNoBuffer);
        r->active = true;
        r->placed = 0;
      } else if (u.mo.get() != r->placed) {
        return UntaggedError(kDdpEcodeUtInvalidMo);
      }
      if (r->status != WcStatus::kSuccess)
        return MakeTermError(TermLayer::kDdp, kDdpEtypeCatastrophic, 0);
      if (r->placed + len > r->total) {
        r->status = WcStatus::kLocLenErr;
        return UntaggedError(kDdpEcodeUtTooLong);
      }
      SliceIov(r->buf, r->placed, len, dst);
      if (IsSendWithInvalidate(seg.op)) rx_inv_stag_ = u.inval_stag.get();
      return std::nullopt;
    }
    case RdmapOpcode::kReadRequest: {
      auto q = seg.As<ReadRequestHdr>();
      if (q.ddp.qn.get() != kQnReadRequest) return UntaggedError(kDdpEcodeUtInvalidQn);
      if (q.ddp.msn.get() != rx_msn_[kQnReadRequest]) return UntaggedError(kDdpEcodeUtMsnRange);
      if (q.ddp.mo.get() != 0 || !seg.last) return UntaggedError(kDdpEcodeUtInvalidMo);
      if (len != 0) return RemoteOpError(kRdmapEcodeUnspecified);
      if (irq_.size() >= params_.ird) return RemoteOpError(kRdmapEcodeCatastrophicStream);
      uint32_t size = q.read_size.get();
      uint64_t src_to = q.src_to.get();
      uint32_t src_stag = q.src_stag.get();
      if (size > 0) {
        MrCheck c = dev_->mrs().Check(src_stag, pd_->id(), src_to, size, rdma::kAccessRemoteRead);
        if (c != MrCheck::kOk) return ReadSourceTermError(c);
      }
      IrqEntry e;
      e.sink_stag = q.sink_stag.get();
      e.sink_to = q.sink_to.get();
      e.length = size;
      e.src = reinterpret_cast<uint8_t*>(src_to);
      e.src_stag = src_stag;
      e.src_to = src_to;
      rx_pending_rreq_ = e;
      return std::nullopt;
    }
    case RdmapOpcode::kTerminate: {
      auto u = seg.As<UntaggedHdr>();
      if (u.qn.get() != kQnTerminate) return UntaggedError(kDdpEcodeUtInvalidQn);
      if (len > sizeof(term_buf_))
        return TermError{TermLayer::kRdmap, kRdmapEtypeRemoteOperation, kRdmapEcodeUnspecified,
                         false, false};
      std::memcpy(term_hdr_, seg.hdr.data(), sizeof(term_hdr_));
      term_len_ = len;
      if (len > 0) dst->push_back({term_buf_, len});
      return std::nullopt;
    }
  }
  return RemoteOpError(kRdmapEcodeOpcode);
}

std::optional<TermError> SoftQp::OnSegmentDone(const RxSegment& seg) {
  const uint32_t len = seg.payload_len;
  switch (seg.op) {
    case RdmapOpcode::kRdmaWrite:
      return std::nullopt;
    case RdmapOpcode::kReadResponse: {
      SqWqe& w = *orq_.front();
      w.progress += len;
      if (seg.last) {
        w.st = SqWqe::St::kDone;
        w.status = WcStatus::kSuccess;
        orq_.pop_front();
        ReapSq();
      }
      return std::nullopt;
    }
    case RdmapOpcode::kSend:
    case RdmapOpcode::kSendInv:
    case RdmapOpcode::kSendSe:
    case RdmapOpcode::kSendSeInv: {
      RqWqe& r = rq_.front();
      r.placed += len;
      if (!seg.last) return std::nullopt;
      ++rx_msn_[kQnSend];
      uint32_t invalidated = 0;
      bool with_inv = IsSendWithInvalidate(seg.op);
      if (with_inv) {
        MrCheck c = dev_->mrs().Invalidate(rx_inv_stag_, pd_->id());
        if (c != MrCheck::kOk) {
          r.status = WcStatus::kRemInvReqErr;
          return MakeTermError(TermLayer::kRdmap, kRdmapEtypeRemoteProtection,
                               kRdmapEcodeCantInvalidate);
        }
        invalidated = rx_inv_stag_;
      }
      rdma::WorkCompletion wc{r.wr_id,
                              WcStatus::kSuccess,
                              WcOpcode::kRecv,
                              0,
                              static_cast<uint32_t>(r.placed),
                              invalidated,
                              qpn_,
                              with_inv ? static_cast<uint32_t>(rdma::kWcWithInv) : 0u};
      rq_.pop_front();
      recv_cq_->Push(wc, IsSolicited(seg.op));
      return std::nullopt;
    }
    case RdmapOpcode::kReadRequest:
      ++rx_msn_[kQnReadRequest];
      irq_.push_back(*rx_pending_rreq_);
      rx_pending_rreq_.reset();
      return std::nullopt;
    case RdmapOpcode::kTerminate:
      term_received_ = DecodeTerminate(std::span<const uint8_t, sizeof(TerminateHdr)>(term_hdr_),
                                       {term_buf_, term_len_});
      ISER_LOG(
          kWarning, "softiwarp qp %u: peer sent Terminate (%s)", qpn_,
          TermErrorString(term_received_->layer, term_received_->etype, term_received_->ecode));
      rx_.Stop();
      return std::nullopt;
  }
  return std::nullopt;
}

// ---------------------------------------------------------------- completion, errors

void SoftQp::ReapSq() {
  while (!sq_.empty() && sq_.front()->st == SqWqe::St::kDone) {
    SqWqe& w = *sq_.front();
    bool signaled = sq_sig_all_ || (w.flags & rdma::kSendSignaled);
    if (signaled || w.status != WcStatus::kSuccess) {
      uint32_t bytes = w.opcode == WrOpcode::kLocalInv ? 0 : static_cast<uint32_t>(w.total);
      send_cq_->Push({w.wr_id, w.status, WcOpcodeFor(w.opcode), 0, bytes, 0, qpn_, 0}, false);
    }
    if (tx_wqe_ == &w) tx_wqe_ = nullptr;
    sq_.pop_front();
    if (sq_next_ > 0) --sq_next_;
  }
}

void SoftQp::FailWithTerminate(const TermError& err, std::span<const uint8_t> offending) {
  if (term_sent_ || closed_) return;
  term_sent_ = err;
  term_pending_ = EncodeTerminate(err, offending);
  rx_dead_ = true;
  close_after_tx_ = true;
  state_ = rdma::QpState::kSqe;
  UpdateInterest();
  // Do not wait forever for a peer that stopped reading.
  if (registered_) {
    std::weak_ptr<bool> token = alive_;
    dev_->loop()->RunAfter(absl::Seconds(2), [this, token] {
      if (!token.expired()) CloseConnection(WcStatus::kWrFlushErr);
    });
  }
  TxPump();
}

void SoftQp::OnPeerTerminate() {
  const TerminateInfo& t = *term_received_;
  bool protection = (t.layer == TermLayer::kRdmap && t.etype == kRdmapEtypeRemoteProtection) ||
                    (t.layer == TermLayer::kDdp && t.etype == kDdpEtypeTagged);
  CloseConnection(protection ? WcStatus::kRemAccessErr : WcStatus::kRemOpErr);
}

void SoftQp::CloseConnection(WcStatus first_sq_status) {
  if (closed_) return;
  closed_ = true;
  rx_dead_ = true;
  state_ = rdma::QpState::kError;
  if (registered_) {
    dev_->loop()->RemoveFd(fd_.get());
    registered_ = false;
  }
  if (fd_) ::shutdown(fd_.get(), SHUT_RDWR);
  fd_.Reset();
  FlushAll(first_sq_status);
  if (on_closed_) {
    auto cb = std::move(on_closed_);
    on_closed_ = nullptr;
    cb();
  }
}

void SoftQp::FlushAll(WcStatus first_sq_status) {
  bool first = true;
  for (auto& w : sq_) {
    if (w->st == SqWqe::St::kDone) continue;
    w->status = first ? first_sq_status : WcStatus::kWrFlushErr;
    first = false;
    w->st = SqWqe::St::kDone;
  }
  orq_.clear();
  irq_.clear();
  written_pending_.clear();  // flushed above: not known to be on the wire
  tx_kind_ = TxKind::kNone;
  tx_wqe_ = nullptr;
  ReapSq();
  sq_next_ = 0;
  while (!rq_.empty()) {
    RqWqe& r = rq_.front();
    WcStatus st = r.status != WcStatus::kSuccess ? r.status : WcStatus::kWrFlushErr;
    recv_cq_->Push({r.wr_id, st, WcOpcode::kRecv, 0, static_cast<uint32_t>(r.placed), 0, qpn_, 0},
                   false);
    rq_.pop_front();
  }
}

}  // namespace iser::softiwarp
