#include "iser/transport/iser/iser_initiator_connection.h"

#include <netinet/in.h>
#include <sys/epoll.h>

#include <algorithm>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "iser/base/logging.h"
#include "iser/login/initiator_negotiator.h"
#include "iser/transport/iser/iser_control.h"
#include "iser/transport/rdma/softiwarp/softiwarp.h"
#include "iser/transport/tcp/tcp_listener.h"

namespace iser::iser_transport {

using pdu::Bhs;
using pdu::Opcode;

struct IserInitiatorConnection::Wr {
  enum class Kind { kRecv, kSend };
  Kind kind = Kind::kSend;
  RegisteredBufferPool::Lease buf;  // receive buffer, or iSER header + BHS (+ copied data)
  rdma::Sge sge[2];
  uint32_t num_sge = 1;
  uint32_t counted_itt = pdu::kReservedTag;  // an unexpected PDU of this ITT
};

struct IserInitiatorConnection::TaskRegs {
  std::unique_ptr<rdma::MemoryRegion> read_mr;   // the Read STag
  std::unique_ptr<rdma::MemoryRegion> write_mr;  // the Write STag and the payload lkey
};

namespace {

// Sends from the initiator that the target answers with a PDU of the same ITT: until
// then each holds one of the target's receive buffers in the RFC 7145 sense.
bool ExpectsAnswer(const Bhs& bhs) {
  switch (bhs.opcode()) {
    case Opcode::kScsiCommand:
    case Opcode::kTaskMgmtRequest:
    case Opcode::kTextRequest:
    case Opcode::kLogoutRequest:
      return true;
    case Opcode::kNopOut:
      return bhs.itt() != pdu::kReservedTag;
    default:
      return false;
  }
}

// A PDU from the target that ends the exchange its ITT names.
bool IsAnswer(const Bhs& bhs) {
  switch (bhs.opcode()) {
    case Opcode::kScsiResponse:
    case Opcode::kTaskMgmtResponse:
    case Opcode::kLogoutResponse:
    case Opcode::kNopIn:
      return true;
    case Opcode::kTextResponse:
      return (bhs.flags() & pdu::kFlagFinal) != 0;
    default:
      return false;
  }
}

}  // namespace

void IserInitiatorConnection::Connect(EventLoop* loop, const std::string& portal,
                                      absl::Duration timeout, const IserInitiatorOptions& options,
                                      initiator::TransportConnectCallback done) {
  auto fail = [&](absl::Status s) { loop->Defer([done, s] { done(s); }); };
  auto addr = transport::SocketAddress::Parse(portal);
  if (!addr.ok()) return fail(addr.status());
  if (addr->storage.ss_family != AF_INET)
    return fail(absl::InvalidArgumentError(
        absl::StrCat("iSER over software iWARP needs an IPv4 portal, not ", portal)));
  sockaddr_in dst;
  std::memcpy(&dst, &addr->storage, sizeof(dst));

  std::unique_ptr<IserInitiatorConnection> c(new IserInitiatorConnection(loop, portal, options));
  if (absl::Status s = c->InitDevice(); !s.ok()) return fail(s);
  IserInitiatorConnection* raw = c.get();
  raw->connect_done_ = std::move(done);
  raw->self_ = std::move(c);
  raw->connect_timer_ = loop->RunAfter(timeout, [raw] {
    raw->connect_timer_ = 0;
    raw->FinishConnect(absl::UnavailableError(absl::StrCat("iSER connection to ", raw->peer_,
                                                           " timed out (no MPA reply: not an "
                                                           "iSER target?)")));
  });
  if (absl::Status s = raw->id_->ResolveAddr(dst, timeout); !s.ok()) {
    loop->Defer([raw, s] { raw->FinishConnect(s); });
  }
}

IserInitiatorConnection::IserInitiatorConnection(EventLoop* loop, std::string portal,
                                                 const IserInitiatorOptions& options)
    : loop_(loop), peer_(std::move(portal)), options_(options) {
  options_.recv_depth = std::max(options_.recv_depth, options_.max_commands + 2);
}

IserInitiatorConnection::~IserInitiatorConnection() {
  if (connect_timer_ != 0) loop_->CancelTimer(connect_timer_);
  if (cq_fd_registered_) comp_channel_->Unwatch(loop_);
  if (cm_fd_registered_) loop_->RemoveFd(cm_channel_->fd());
  id_.reset();  // the QP first: no more completions or placements into our memory
  waiting_.clear();
  inflight_.clear();
  tasks_.clear();
}

absl::Status IserInitiatorConnection::InitDevice() {
  device_ = softiwarp::OpenDevice(loop_, options_.softiwarp);
  auto ch = softiwarp::CreateEventChannel(device_.get());
  if (!ch.ok()) return ch.status();
  cm_channel_ = std::move(*ch);
  auto pd = device_->AllocPd();
  if (!pd.ok()) return pd.status();
  pd_ = std::move(*pd);
  pool_ = std::make_unique<RegisteredBufferPool>(pd_.get(), 0);
  auto cch = device_->CreateCompletionChannel();
  if (!cch.ok()) return cch.status();
  comp_channel_ = std::move(*cch);
  auto cq = device_->CreateCq(static_cast<int>(options_.recv_depth + options_.send_depth + 16),
                              this, comp_channel_.get());
  if (!cq.ok()) return cq.status();
  cq_ = std::move(*cq);
  auto id = cm_channel_->CreateId(this);
  if (!id.ok()) return id.status();
  id_ = std::move(*id);
  absl::Status s = loop_->AddFd(cm_channel_->fd(), EPOLLIN, [this](uint32_t) { OnCmEvents(); });
  if (!s.ok()) return s;
  cm_fd_registered_ = true;
  return absl::OkStatus();
}

absl::Status IserInitiatorConnection::CreateQpAndPostReceives() {
  rdma::QpInitAttr attr;
  attr.send_cq = cq_.get();
  attr.recv_cq = cq_.get();
  attr.cap.max_send_wr = options_.send_depth;
  attr.cap.max_recv_wr = options_.recv_depth;
  attr.cap.max_send_sge = 2;
  attr.cap.max_recv_sge = 1;
  if (absl::Status s = id_->CreateQp(pd_.get(), attr); !s.ok()) return s;
  size_t recv_size =
      kIserHeaderSize + pdu::kBhsSize + options_.max_ahs + options_.recv_data_segment + 4;
  for (uint32_t i = 0; i < options_.recv_depth; ++i) {
    auto wr = std::make_unique<Wr>();
    wr->kind = Wr::Kind::kRecv;
    auto lease = pool_->Get(recv_size);
    if (!lease.ok()) return lease.status();
    wr->buf = std::move(*lease);
    Wr* raw = wr.get();
    inflight_.emplace(raw, std::move(wr));
    if (absl::Status s = PostRecv(raw); !s.ok()) return s;
  }
  if (absl::Status s = cq_->RequestNotify(false); !s.ok()) return s;
  absl::Status s = comp_channel_->Watch(loop_, [this] { OnCqEvent(); });
  if (!s.ok()) return s;
  cq_fd_registered_ = true;
  return absl::OkStatus();
}

absl::Status IserInitiatorConnection::PostRecv(Wr* wr) {
  wr->sge[0] = {reinterpret_cast<uint64_t>(wr->buf.data()),
                static_cast<uint32_t>(wr->buf.capacity()), wr->buf.lkey()};
  rdma::RecvWr r;
  r.wr_id = rdma::WrIdOf(wr);
  r.sg_list = {&wr->sge[0], 1};
  return id_->qp()->PostRecv(r);
}

void IserInitiatorConnection::OnCmEvents() {
  for (;;) {
    auto ev = cm_channel_->GetEvent();
    if (!ev.ok()) return;
    rdma::CmEvent& e = *ev;
    if (!established_) {
      switch (e.type) {
        case rdma::CmEventType::kAddrResolved:
          if (absl::Status s = id_->ResolveRoute(absl::Seconds(5)); !s.ok())
            return FinishConnect(s);
          break;
        case rdma::CmEventType::kRouteResolved: {
          if (absl::Status s = CreateQpAndPostReceives(); !s.ok()) return FinishConnect(s);
          rdma::ConnParam param;
          // Linux struct iser_cm_hdr: we don't do zero-based virtual addresses.
          uint8_t flags = kIserCmZbvaNotSupported;
          if (!options_.allow_send_with_invalidate) flags |= kIserCmSendWithInvNotSupported;
          send_with_invalidate_ok_ = options_.allow_send_with_invalidate;
          param.private_data = {flags, 0, 0, 0};
          param.responder_resources = options_.ird;
          param.initiator_depth = 0;  // the initiator never issues RDMA Reads in iSER
          if (absl::Status s = id_->Connect(param); !s.ok()) return FinishConnect(s);
          break;
        }
        case rdma::CmEventType::kEstablished:
          established_ = true;
          return FinishConnect(absl::OkStatus());
        case rdma::CmEventType::kRejected:
          return FinishConnect(absl::UnavailableError(
              absl::StrCat("iSER connection to ", peer_, " rejected by the target")));
        default:
          return FinishConnect(absl::UnavailableError(absl::StrCat(
              "cannot open an iSER connection to ", peer_, ": ",
              absl::string_view(rdma::CmEventTypeName(e.type).data(),
                                rdma::CmEventTypeName(e.type).size()),
              e.status != 0 ? absl::StrCat(" (", std::strerror(-e.status), ")") : std::string())));
      }
      continue;
    }
    if (e.type == rdma::CmEventType::kDisconnected || e.type == rdma::CmEventType::kConnectError ||
        e.type == rdma::CmEventType::kUnreachable) {
      Fail(absl::UnavailableError("iSER connection closed by the target"));
      return;
    }
  }
}

void IserInitiatorConnection::FinishConnect(const absl::Status& status) {
  if (!self_) return;
  if (connect_timer_ != 0) {
    loop_->CancelTimer(connect_timer_);
    connect_timer_ = 0;
  }
  initiator::TransportConnectCallback done = std::move(connect_done_);
  std::unique_ptr<IserInitiatorConnection> me = std::move(self_);
  if (status.ok()) {
    done(std::unique_ptr<initiator::InitiatorTransport>(std::move(me)));
    return;
  }
  // We may be inside our own CM handler: free after it returns.
  IserInitiatorConnection* raw = me.release();
  loop_->Defer([raw] { delete raw; });
  done(status);
}

void IserInitiatorConnection::PrepareLogin(login::InitiatorLoginConfig& config) {
  config.rdma = true;
  login::OperationalParams& o = config.offer;
  o.header_digest = false;  // RFC 7145 sec 6.2: no digests on an iSER connection
  o.data_digest = false;
  o.initiator_recv_dsl = options_.recv_data_segment;
  // Ask for large control PDUs (immediate data); the target's answer caps it.
  o.target_recv_dsl = std::max<uint32_t>(o.target_recv_dsl, 256 << 10);
  o.max_outstanding_unexpected_pdus = options_.recv_depth - options_.max_commands;
  o.max_ahs_length = options_.max_ahs;
}

void IserInitiatorConnection::SetEvents(initiator::InitiatorTransportEvents* events) {
  events_ = events;
  if (events_ != nullptr) DrainCq();  // completions that came in before the session attached
}

void IserInitiatorConnection::ApplyParams(const login::OperationalParams& params) {
  if (!params.rdma_extensions) {
    FailLater(absl::FailedPreconditionError(
        absl::StrCat("target at ", peer_, " refused RDMAExtensions=Yes on an iSER connection")));
    return;
  }
  target_recv_dsl_ = std::max<uint32_t>(512, params.target_recv_dsl);
  unexpected_limit_ = params.target_max_outstanding_unexpected_pdus;
  full_feature_ = true;
}

void IserInitiatorConnection::OnCqEvent() {
  if (closed_) return;
  AckCqEventsAndRearm(*comp_channel_, *cq_);
  DrainCq();
}

void IserInitiatorConnection::DrainCq() {
  rdma::WorkCompletion wcs[32];
  while (!dead() && events_ != nullptr) {
    int n = cq_->Poll(wcs);
    if (n <= 0) return;
    for (int i = 0; i < n && !dead(); ++i) OnCompletion(wcs[i]);
  }
}

void IserInitiatorConnection::OnCompletion(const rdma::WorkCompletion& wc) {
  Wr* wr = rdma::FromWrId<Wr>(wc.wr_id);
  auto it = inflight_.find(wr);
  if (it == inflight_.end()) return;
  if (wc.status != rdma::WcStatus::kSuccess) return Fail(CompletionError(wc));
  if (wr->kind == Wr::Kind::kRecv) {
    OnRecv(wr, wc);
    return;
  }
  inflight_.erase(it);  // the Send is done: its header buffer goes back to the pool
  --sends_posted_;
  Pump();
}

void IserInitiatorConnection::OnRecv(Wr* wr, const rdma::WorkCompletion& wc) {
  std::span<const uint8_t> msg(wr->buf.data(), std::min<size_t>(wc.byte_len, wr->buf.capacity()));
  auto hdr = DecodeIserHeader(msg);
  if (!hdr.ok()) return Fail(hdr.status());
  if (hdr->opcode != IserOpcode::kControl) {
    // We never send Hello (iSERHelloRequired=No), so no HelloReply may come.
    return Fail(absl::InvalidArgumentError("unexpected iSER Hello/HelloReply from the target"));
  }
  auto parsed = ParseControlPdu(msg.subspan(kIserHeaderSize), options_.max_ahs,
                                // Login Responses may carry up to 8192 bytes
                                // whatever we declared for full feature phase.
                                std::max<size_t>(options_.recv_data_segment, 8192));
  if (!parsed.ok()) return Fail(parsed.status());
  pdu::ReceivedPdu p = std::move(*parsed);
  Opcode op = p.bhs.opcode();
  if (op == Opcode::kDataIn || op == Opcode::kR2t) {
    // RFC 7145 sec 7.3: data moves by RDMA; these PDUs never travel on iSER.
    return Fail(absl::InvalidArgumentError(
        absl::StrCat("target sent a ", pdu::DescribeBhs(p.bhs), " PDU on an iSER connection")));
  }
  if (wc.wc_flags & rdma::kWcWithInv) {
    // Only the STag of the command this response ends may be invalidated (sec 7.3.2).
    auto t = tasks_.find(p.bhs.itt());
    bool ours = op == Opcode::kScsiResponse && t != tasks_.end() &&
                ((t->second->read_mr && t->second->read_mr->rkey() == wc.invalidated_rkey) ||
                 (t->second->write_mr && t->second->write_mr->rkey() == wc.invalidated_rkey));
    if (!ours)
      return Fail(absl::InvalidArgumentError(absl::StrFormat(
          "target invalidated STag 0x%08x with a PDU that does not own it", wc.invalidated_rkey)));
    ++remote_invalidations_;
  }
  // Copied out: the buffer is a credit for the target's next Send at once.
  if (absl::Status s = PostRecv(wr); !s.ok()) return Fail(s);
  if (full_feature_) {
    if (IsAnswer(p.bhs)) {
      ReleaseCredits(p.bhs.itt());
    } else if (op == Opcode::kReject && p.data.size() >= pdu::kBhsSize) {
      ReleaseCredits(
          Bhs(std::span<const uint8_t, pdu::kBhsSize>(p.data.data(), pdu::kBhsSize)).itt());
    }
  }
  events_->OnPduReceived(std::move(p));
}

void IserInitiatorConnection::QueueSend(const IserHeader& hdr, const Bhs& bhs,
                                        std::span<const uint8_t> payload, uint32_t payload_lkey,
                                        bool owned_copy, uint32_t counted_itt) {
  if (dead()) return;
  size_t head = kIserHeaderSize + pdu::kBhsSize;
  auto lease = pool_->Get(head + (owned_copy ? payload.size() : 0));
  if (!lease.ok()) return FailLater(lease.status());
  auto wr = std::make_unique<Wr>();
  wr->buf = std::move(*lease);
  uint8_t* p = wr->buf.data();
  EncodeIserHeader(hdr, {p, kIserHeaderSize});
  Bhs out = bhs;  // the session leaves DataSegmentLength to the transport, as over TCP
  out.set_data_segment_length(static_cast<uint32_t>(payload.size()));
  std::memcpy(p + kIserHeaderSize, out.data(), pdu::kBhsSize);
  if (owned_copy) {
    if (!payload.empty()) std::memcpy(p + head, payload.data(), payload.size());
    head += payload.size();
  } else if (!payload.empty()) {
    // Zero copy: the payload SGE points into the task's registered write buffer.
    wr->sge[1] = {reinterpret_cast<uint64_t>(payload.data()), static_cast<uint32_t>(payload.size()),
                  payload_lkey};
    wr->num_sge = 2;
  }
  wr->sge[0] = {reinterpret_cast<uint64_t>(p), static_cast<uint32_t>(head), wr->buf.lkey()};
  wr->counted_itt = counted_itt;
  waiting_.push_back(std::move(wr));
  Pump();
}

void IserInitiatorConnection::Pump() {
  while (!dead() && !waiting_.empty() && sends_posted_ < options_.send_depth) {
    Wr* next = waiting_.front().get();
    bool counted = next->counted_itt != pdu::kReservedTag;
    // Over the target's declared limit: wait for answers (but never deadlock on an
    // exchange that alone needs more than the limit).
    if (counted && unexpected_limit_ != 0 && unexpected_outstanding_ >= unexpected_limit_ &&
        unexpected_outstanding_ > unexpected_by_itt_[next->counted_itt]) {
      ++credit_waits_;
      return;
    }
    std::unique_ptr<Wr> wr = std::move(waiting_.front());
    waiting_.pop_front();
    if (counted) {
      ++unexpected_outstanding_;
      ++unexpected_by_itt_[wr->counted_itt];
    }
    rdma::SendWr s;
    s.wr_id = rdma::WrIdOf(wr.get());
    s.opcode = rdma::WrOpcode::kSend;
    s.send_flags = rdma::kSendSignaled;
    s.sg_list = {wr->sge, wr->num_sge};
    Wr* raw = wr.get();
    inflight_.emplace(raw, std::move(wr));
    ++sends_posted_;
    ++sends_;
    if (absl::Status st = id_->qp()->PostSend(s); !st.ok()) return FailLater(st);
  }
}

void IserInitiatorConnection::ReleaseCredits(uint32_t itt) {
  auto it = unexpected_by_itt_.find(itt);
  if (it == unexpected_by_itt_.end()) return;
  unexpected_outstanding_ -= std::min(unexpected_outstanding_, it->second);
  unexpected_by_itt_.erase(it);
  Pump();
}

void IserInitiatorConnection::SendPdu(initiator::OutgoingPdu pdu) {
  uint32_t counted = full_feature_ && ExpectsAnswer(pdu.bhs) ? pdu.bhs.itt() : pdu::kReservedTag;
  QueueSend(IserHeader::Control(), pdu.bhs, pdu.data, 0, /*owned_copy=*/true, counted);
}

void IserInitiatorConnection::SendCommand(initiator::OutgoingPdu cmd, initiator::TaskIo& io) {
  if (dead()) return;
  auto regs = std::make_unique<TaskRegs>();
  IserHeader hdr = IserHeader::Control();
  if (!io.read.empty()) {
    auto mr = pd_->RegisterMemory(io.read.data(), io.read.size(),
                                  rdma::kAccessLocalWrite | rdma::kAccessRemoteWrite);
    if (!mr.ok()) return FailLater(mr.status());
    regs->read_mr = std::move(*mr);
    hdr.read_valid = true;
    hdr.read_stag = regs->read_mr->rkey();
    hdr.read_base = reinterpret_cast<uint64_t>(io.read.data());
    ++registrations_;
  }
  if (!io.write.empty()) {
    // The target RDMA-reads solicited data from here; immediate and unsolicited Sends
    // take their payload from the same registration.
    auto mr = pd_->RegisterMemory(const_cast<uint8_t*>(io.write.data()), io.write.size(),
                                  rdma::kAccessRemoteRead);
    if (!mr.ok()) return FailLater(mr.status());
    regs->write_mr = std::move(*mr);
    hdr.write_valid = true;
    hdr.write_stag = regs->write_mr->rkey();
    hdr.write_base = reinterpret_cast<uint64_t>(io.write.data());
    ++registrations_;
  }
  uint32_t lkey = regs->write_mr ? regs->write_mr->lkey() : 0;
  bool in_write_buffer = !cmd.data.empty() && regs->write_mr &&
                         cmd.data.data() >= io.write.data() &&
                         cmd.data.data() + cmd.data.size() <= io.write.data() + io.write.size();
  tasks_[io.itt] = std::move(regs);
  QueueSend(hdr, cmd.bhs, cmd.data, lkey, /*owned_copy=*/!in_write_buffer, io.itt);
}

void IserInitiatorConnection::SendDataOut(initiator::TaskIo& io, uint32_t ttt, uint32_t offset,
                                          uint32_t length, uint32_t exp_stat_sn) {
  if (dead()) return;
  auto t = tasks_.find(io.itt);
  if (ttt != pdu::kReservedTag || t == tasks_.end() || !t->second->write_mr) {
    // Solicited data is the target's RDMA Read; an R2T never reaches the session.
    return FailLater(absl::InternalError("solicited Data-Out requested on an iSER connection"));
  }
  uint32_t lkey = t->second->write_mr->lkey();
  uint32_t data_sn = 0;
  while (length > 0) {
    // RFC 7145 sec 7.3.4: non-final unsolicited Data-Outs carry exactly
    // TargetRecvDataSegmentLength bytes.
    uint32_t seg = std::min(length, target_recv_dsl_);
    bool last = seg == length;
    Bhs b = Bhs::Make(Opcode::kDataOut, last ? pdu::kFlagFinal : 0);
    b.set_lun_field(io.lun_field);
    b.set_itt(io.itt);
    b.set_ttt(pdu::kReservedTag);
    b.set_u32(pdu::field::kExpStatSn, exp_stat_sn);
    b.set_u32(pdu::field::kDataSn, data_sn++);
    b.set_u32(pdu::field::kBufferOffset, offset);
    b.set_data_segment_length(seg);
    QueueSend(IserHeader::Control(), b, io.write.subspan(offset, seg), lkey, false, io.itt);
    offset += seg;
    length -= seg;
  }
}

void IserInitiatorConnection::ReleaseTask(initiator::TaskIo& io) {
  // Deregistering invalidates what the target's Send with Invalidate has not: after
  // this the target can no longer touch the caller's buffers (RFC 7145 sec 7.3.2).
  // A Send still queued with payload in the write buffer keeps its data reachable
  // only through the QP, so the task's registration must outlive it: a completed
  // command's Sends have all completed (the response came after them).
  tasks_.erase(io.itt);
  // An aborted write may still have unsolicited Data-Outs waiting for credits: they
  // point into a buffer the caller is about to reuse.
  std::erase_if(waiting_, [&](const std::unique_ptr<Wr>& w) {
    return w->counted_itt == io.itt && w->num_sge == 2;
  });
  ReleaseCredits(io.itt);
}

void IserInitiatorConnection::Abort(const absl::Status& why) { FailLater(why); }

void IserInitiatorConnection::FailLater(const absl::Status& why) {
  // Called under the session: report the close from the loop, not from inside its call.
  if (dead()) return;
  fail_pending_ = true;
  waiting_.clear();
  if (id_ && id_->qp()) (void)id_->qp()->MoveToError();
  std::weak_ptr<bool> token = alive_;
  loop_->Post([this, token, why] {
    if (token.expired()) return;
    fail_pending_ = false;
    Fail(why);
  });
}

void IserInitiatorConnection::Fail(const absl::Status& why) {
  if (closed_) return;
  closed_ = true;
  if (!why.ok() && !absl::IsAborted(why))
    ISER_LOG(kInfo, "iser initiator %s: %s", peer_, std::string(why.message()));
  if (cq_fd_registered_) {
    comp_channel_->Unwatch(loop_);
    cq_fd_registered_ = false;
  }
  waiting_.clear();
  if (id_) (void)id_->Disconnect();
  if (events_ != nullptr)
    events_->OnTransportClosed(why.ok() ? absl::UnavailableError("closed") : why);
}

initiator::TransportFactory IserTransportFactory(IserInitiatorOptions options) {
  return [options](EventLoop* loop, const std::string& portal, absl::Duration timeout,
                   initiator::TransportConnectCallback done) {
    IserInitiatorConnection::Connect(loop, portal, timeout, options, std::move(done));
  };
}

}  // namespace iser::iser_transport
