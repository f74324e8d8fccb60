#include "iser/transport/iser/iser_target_connection.h"

#include <algorithm>
#include <cstring>

#include "absl/strings/str_format.h"
#include "iser/base/logging.h"
#include "iser/target/connection.h"
#include "iser/target/task.h"
#include "iser/transport/iser/iser_control.h"

namespace iser::iser_transport {

using pdu::Bhs;
using pdu::Opcode;

// The task buffer the RDMA Reads of one write command land in. Shared by those Reads'
// work requests: if the task dies first (aborted), its buffer moves here and is freed
// only after the last Read has completed or been flushed, so late data never lands in
// a buffer already recycled for another command.
struct IserTargetConnection::ReadSink {
  IoBuffer orphaned;
};

struct IserTargetConnection::Wr {
  enum class Kind { kRecv, kSend, kWrite, kRead };
  Kind kind = Kind::kSend;
  RegisteredBufferPool::Lease buf;  // send
  IoBuffer data;                    // Write source: the task's read data; receive: data
  rdma::Sge sge;
  // The registration behind `sge` (kWrite, kRead) or the data SGE (kRecv), held until
  // the WR completes: the pool's key cache may drop its own reference meanwhile.
  std::shared_ptr<rdma::MemoryRegion> region;
  // kRecv: iSER header + BHS land in `slot` (this receive's piece of the slab), the AHS
  // and data segment in `data`, what does not fit there (AHS + data beyond its size)
  // in the rest of the slot.
  uint8_t* slot = nullptr;
  rdma::Sge recv_sges[3];
  rdma::WrOpcode opcode = rdma::WrOpcode::kSend;
  uint64_t remote_addr = 0;
  uint32_t rkey = 0;
  uint32_t invalidate_rkey = 0;
  // kRead: the solicited burst it fetches, straight into the task buffer.
  uint32_t itt = 0, ttt = 0, offset = 0, length = 0;
  std::shared_ptr<ReadSink> sink;
};

absl::StatusOr<std::unique_ptr<IserTargetConnection>> IserTargetConnection::Create(
    EventLoop* loop, std::shared_ptr<IserDeviceContext> ctx, std::unique_ptr<rdma::CmId> id,
    const IserConnectionOptions& options, bool send_with_invalidate, std::string peer,
    std::string local) {
  std::unique_ptr<IserTargetConnection> c(
      new IserTargetConnection(loop, std::move(ctx), std::move(id), options, send_with_invalidate,
                               std::move(peer), std::move(local)));
  if (absl::Status s = c->Init(); !s.ok()) return s;
  return c;
}

IserTargetConnection::IserTargetConnection(EventLoop* loop, std::shared_ptr<IserDeviceContext> ctx,
                                           std::unique_ptr<rdma::CmId> id,
                                           const IserConnectionOptions& options,
                                           bool send_with_invalidate, std::string peer,
                                           std::string local)
    : loop_(loop),
      ctx_(std::move(ctx)),
      options_(options),
      send_with_invalidate_(send_with_invalidate),
      peer_(std::move(peer)),
      local_(std::move(local)),
      id_(std::move(id)) {
  id_->set_context(this);
}

IserTargetConnection::~IserTargetConnection() {
  if (fd_registered_) comp_channel_->Unwatch(loop_);
  id_.reset();  // QP first, then the CQ and channel (members below)
  waiting_.clear();
  inflight_.clear();
  cq_.reset();
  comp_channel_.reset();
}

absl::Status IserTargetConnection::Init() {
  auto ch = ctx_->device->CreateCompletionChannel();
  if (!ch.ok()) return ch.status();
  comp_channel_ = std::move(*ch);
  int cqe = static_cast<int>(options_.recv_depth + options_.send_depth + 16);
  auto cq = ctx_->device->CreateCq(cqe, this, comp_channel_.get());
  if (!cq.ok()) return cq.status();
  cq_ = std::move(*cq);
  rdma::QpInitAttr attr;
  attr.send_cq = cq_.get();
  attr.recv_cq = cq_.get();
  attr.cap.max_send_wr = options_.send_depth;
  attr.cap.max_recv_wr = options_.recv_depth;
  attr.cap.max_send_sge = 1;
  attr.cap.max_recv_sge = 3;
  if (absl::Status s = id_->CreateQp(ctx_->pd.get(), attr); !s.ok()) return s;
  auto slab = ctx_->pool->Get(size_t{options_.recv_depth} * RecvSlotSize());
  if (!slab.ok()) return slab.status();
  recv_slab_ = std::move(*slab);
  for (uint32_t i = 0; i < options_.recv_depth; ++i) {
    auto wr = std::make_unique<Wr>();
    wr->kind = Wr::Kind::kRecv;
    wr->slot = recv_slab_.data() + size_t{i} * RecvSlotSize();
    Wr* raw = wr.get();
    inflight_.emplace(raw, std::move(wr));
    if (absl::Status s = PostRecv(raw); !s.ok()) return s;
  }
  return cq_->RequestNotify(false);
}

size_t IserTargetConnection::RecvSlotSize() const {
  // Header part, then the overflow part (AHS plus padding), cache-line aligned.
  return (kRecvHeadSize + options_.max_ahs + 4 + 63) & ~size_t{63};
}

absl::Status IserTargetConnection::PostRecv(Wr* wr) {
  if (wr->data.empty()) {
    // The last one went to a task with its immediate data: take a fresh one (the task
    // owns the old one until it is done with it, so nothing lands there any more).
    wr->data = IoBuffer::Allocate(options_.recv_data_segment);
  }
  auto data_region = ctx_->pool->LocalRegion(wr->data.data(), wr->data.size());
  if (!data_region.ok()) return data_region.status();
  wr->region = std::move(*data_region);
  uint32_t slab_key = recv_slab_.lkey();
  wr->recv_sges[0] = {reinterpret_cast<uint64_t>(wr->slot), kRecvHeadSize, slab_key};
  wr->recv_sges[1] = {reinterpret_cast<uint64_t>(wr->data.data()),
                      static_cast<uint32_t>(wr->data.size()), wr->region->lkey()};
  wr->recv_sges[2] = {reinterpret_cast<uint64_t>(wr->slot + kRecvHeadSize),
                      static_cast<uint32_t>(RecvSlotSize() - kRecvHeadSize), slab_key};
  rdma::RecvWr r;
  r.wr_id = rdma::WrIdOf(wr);
  r.sg_list = {wr->recv_sges, 3};
  return id_->qp()->PostRecv(r);
}

void IserTargetConnection::SetEvents(target::TransportEvents* events) {
  events_ = events;
  if (closed_ || fd_registered_) return;
  absl::Status s = comp_channel_->Watch(loop_, [this] { OnCqEvent(); });
  if (!s.ok()) {
    FailLater(s);
    return;
  }
  fd_registered_ = true;
  DrainCq();  // completions that came in before the core was attached
}

void IserTargetConnection::ApplyParams(const login::OperationalParams& params) {
  tagged_solicited_only_ =
      params.tagged_buffer_for_solicited_data_only || options_.write_base_is_first_solicited_byte;
  max_outstanding_r2t_ = std::max<uint32_t>(1, params.max_outstanding_r2t);
  full_feature_ = true;
  if (!params.rdma_extensions)
    FailLater(
        absl::FailedPreconditionError("iSER connection logged in without RDMAExtensions=Yes"));
}

void IserTargetConnection::OnCqEvent() {
  if (closed_) return;
  AckCqEventsAndRearm(*comp_channel_, *cq_);
  DrainCq();
}

void IserTargetConnection::DrainCq() {
  rdma::WorkCompletion wcs[32];
  while (!dead()) {
    int n = cq_->Poll(wcs);
    if (n <= 0) return;
    for (int i = 0; i < n && !dead(); ++i) OnCompletion(wcs[i]);
  }
}

void IserTargetConnection::OnCompletion(const rdma::WorkCompletion& wc) {
  Wr* wr = rdma::FromWrId<Wr>(wc.wr_id);
  auto it = inflight_.find(wr);
  if (it == inflight_.end()) return;
  if (wc.status != rdma::WcStatus::kSuccess) {
    Fail(CompletionError(wc));
    return;
  }
  if (wr->kind == Wr::Kind::kRecv) {
    OnRecv(wr, wc.byte_len);
    return;
  }
  std::unique_ptr<Wr> owned = std::move(it->second);
  inflight_.erase(it);
  --sends_posted_;
  if (owned->kind == Wr::Kind::kRead) OnReadDone(owned.get());
  owned.reset();
  if (closed_) return;
  PumpSends();
  MaybeFinishClose();
}

void IserTargetConnection::OnRecv(Wr* wr, uint32_t len) {
  // The Send as it was scattered: head (iSER header + BHS) in the slot, the rest in the
  // data buffer and, past its end, in the slot's overflow part.
  std::span<const uint8_t> head(wr->slot, std::min<size_t>(len, kRecvHeadSize));
  auto hdr = DecodeIserHeader(head);
  if (!hdr.ok()) {
    Fail(hdr.status());
    return;
  }
  if (hdr->opcode == IserOpcode::kHello) {
    // Hello goes between the final Login Response and the first full-feature PDU
    // (RFC 7145 sec 5.1.3), at most once.
    if (!full_feature_ || hello_seen_ || ffp_pdus_ > 0) {
      Fail(absl::InvalidArgumentError("iSER Hello outside the login-to-FFP transition"));
      return;
    }
    hello_seen_ = true;
    SendHelloReply(*hdr);
    if (absl::Status s = PostRecv(wr); !s.ok()) Fail(s);
    return;
  }
  if (hdr->opcode != IserOpcode::kControl) {
    Fail(absl::InvalidArgumentError("iSER HelloReply sent to a target"));
    return;
  }
  if (head.size() < kRecvHeadSize) {
    Fail(absl::InvalidArgumentError("iSER control message without a complete BHS"));
    return;
  }
  size_t rest_len = len - kRecvHeadSize;
  std::span<uint8_t> rest(wr->data.data(), std::min(rest_len, wr->data.size()));
  std::vector<uint8_t> joined;  // AHS + data that spilled past the data buffer
  if (rest_len > rest.size()) {
    size_t spill = std::min(rest_len - rest.size(), RecvSlotSize() - kRecvHeadSize);
    joined.reserve(rest.size() + spill);
    joined.assign(rest.begin(), rest.end());
    joined.insert(joined.end(), wr->slot + kRecvHeadSize, wr->slot + kRecvHeadSize + spill);
    rest = joined;
  }
  auto parsed = SplitControlPdu(head.subspan(kIserHeaderSize).first<pdu::kBhsSize>(), rest,
                                options_.max_ahs, options_.recv_data_segment);
  if (!parsed.ok()) {
    Fail(parsed.status());
    return;
  }
  pdu::ReceivedPdu p = std::move(*parsed);
  if (events_ == nullptr) {
    FailLater(absl::InternalError("iSER PDU before the connection core attached"));
    return;
  }
  // Where the data segment goes (it must leave the receive buffer before that is posted
  // again):
  //  - immediate data of a SCSI Command: the data buffer goes to the core with the PDU
  //    and the receive gets a fresh one; the task adopts it (no copy) or copies from it;
  //  - unsolicited Data-Out: straight into the task buffer (the core checks the burst
  //    and, seeing it placed, copies nothing);
  //  - anything else: copied out with the PDU.
  Opcode op = p.bhs.opcode();
  IoBuffer handed_over;
  if (!p.data.empty()) {
    std::span<uint8_t> place;
    if (full_feature_ && op == Opcode::kDataOut && p.bhs.ttt() == pdu::kReservedTag)
      place = events_->PlaceData(p.bhs);
    if (full_feature_ && op == Opcode::kScsiCommand && joined.empty()) {
      handed_over = std::move(wr->data);
      ++ctx_->immediate_buffers_handed_over;
    } else if (place.size() == p.data.size()) {
      std::memcpy(place.data(), p.data.data(), place.size());
      p.data = place;
      p.placed = true;
    } else if (!joined.empty()) {
      p.owned = std::move(joined);  // p.data points into its heap block, which stays
    } else {
      p.owned.assign(p.data.begin(), p.data.end());
      p.data = p.owned;
    }
  }
  if (full_feature_) ++ffp_pdus_;
  if (absl::Status s = events_->CheckHeader(p.bhs); !s.ok()) {
    Fail(s);
    return;
  }
  if (full_feature_ && (op == Opcode::kDataOut && p.bhs.ttt() != pdu::kReservedTag)) {
    // Solicited data moves by RDMA Read; a solicited Data-Out PDU is a protocol error.
    Fail(absl::InvalidArgumentError("solicited Data-Out PDU on an iSER connection"));
    return;
  }
  if (op == Opcode::kScsiCommand) {
    Stags st;
    st.write_valid = hdr->write_valid;
    st.read_valid = hdr->read_valid;
    st.write_stag = hdr->write_stag;
    st.write_base = hdr->write_base;
    st.read_stag = hdr->read_stag;
    st.read_base = hdr->read_base;
    stags_[p.bhs.itt()] = st;
  }
  // Nothing of the PDU is left in the receive buffers: they are a credit for the next
  // Send at once.
  if (absl::Status s = PostRecv(wr); !s.ok()) {
    Fail(s);
    return;
  }
  if (handed_over.empty()) {
    events_->OnPduReceived(std::move(p));
  } else {
    events_->OnPduReceived(std::move(p), std::move(handed_over));
  }
}

void IserTargetConnection::SendHelloReply(const IserHeader& hello) {
  // RFC 7145 sec 5.1.3: iSER-ORD = min(our ORD, the initiator's IRD); reject when the
  // versions don't overlap or the initiator wants Reads we can't issue. RFC 5046-era
  // peers send version 1: accepted.
  IserHeader reply;
  reply.opcode = IserOpcode::kHelloReply;
  bool version_ok = hello.min_or_cur_version <= kIserVersion &&
                    (hello.max_version >= kIserVersion || hello.max_version == 1);
  reply.reject = !version_ok || (hello.ird_or_ord > 0 && options_.ord == 0);
  reply.max_version = kIserVersion;
  reply.min_or_cur_version = version_ok ? std::min<uint8_t>(hello.max_version, kIserVersion) : 0;
  reply.ird_or_ord = std::min<uint16_t>(options_.ord, hello.ird_or_ord);
  auto lease = ctx_->pool->Get(kIserHeaderSize);
  if (!lease.ok()) {
    FailLater(lease.status());
    return;
  }
  auto wr = std::make_unique<Wr>();
  wr->buf = std::move(*lease);
  EncodeIserHeader(reply, wr->buf.span());
  wr->sge = {reinterpret_cast<uint64_t>(wr->buf.data()), kIserHeaderSize, wr->buf.lkey()};
  PostSendWr(std::move(wr));
}

void IserTargetConnection::SendPdu(target::OutgoingPdu pdu) {
  if (dead()) return;
  size_t len = kIserHeaderSize + pdu::kBhsSize + pdu.data.size();
  auto lease = ctx_->pool->Get(len);
  if (!lease.ok()) {
    FailLater(lease.status());
    return;
  }
  auto wr = std::make_unique<Wr>();
  wr->buf = std::move(*lease);
  uint8_t* p = wr->buf.data();
  EncodeIserHeader(IserHeader::Control(), {p, kIserHeaderSize});
  std::memcpy(p + kIserHeaderSize, pdu.bhs.data(), pdu::kBhsSize);
  if (!pdu.data.empty())
    std::memcpy(p + kIserHeaderSize + pdu::kBhsSize, pdu.data.data(), pdu.data.size());
  wr->sge = {reinterpret_cast<uint64_t>(p), static_cast<uint32_t>(len), wr->buf.lkey()};
  if (pdu.bhs.opcode() == Opcode::kScsiResponse) {
    // RFC 7145 sec 7.3.2: the response names the Read STag if one was advertised,
    // otherwise the Write STag; Send with Invalidate does it where the peer agreed.
    auto it = stags_.find(pdu.bhs.itt());
    if (it != stags_.end()) {
      uint32_t stag = it->second.read_valid    ? it->second.read_stag
                      : it->second.write_valid ? it->second.write_stag
                                               : 0;
      if (send_with_invalidate_ && (it->second.read_valid || it->second.write_valid)) {
        wr->opcode = rdma::WrOpcode::kSendWithInv;
        wr->invalidate_rkey = stag;
      }
      stags_.erase(it);
    }
  }
  PostSendWr(std::move(wr));
}

bool IserTargetConnection::QueueDataIn(target::Task& task, bool /*with_status*/) {
  if (dead()) return false;
  auto it = stags_.find(task.itt);
  if (it == stags_.end() || !it->second.read_valid) {
    FailLater(absl::InvalidArgumentError(absl::StrFormat(
        "read command ITT 0x%08x without a Read STag in its iSER header", task.itt)));
    return false;
  }
  uint32_t len = std::min(task.scsi.data_in_length, task.edtl);
  auto wr = std::make_unique<Wr>();
  wr->kind = Wr::Kind::kWrite;
  wr->opcode = rdma::WrOpcode::kRdmaWrite;
  wr->data = std::move(task.buffer);
  auto region = ctx_->pool->LocalRegion(wr->data.data(), len);
  if (!region.ok()) {
    FailLater(region.status());
    return false;
  }
  wr->region = std::move(*region);
  wr->sge = {reinterpret_cast<uint64_t>(wr->data.data()), len, wr->region->lkey()};
  wr->remote_addr = it->second.read_base;
  wr->rkey = it->second.read_stag;
  ++rdma_writes_;
  PostSendWr(std::move(wr));
  return false;  // status always follows in its own SCSI Response (RFC 7145 sec 7.3.3)
}

void IserTargetConnection::GetDataOut(target::Task& task) {
  if (dead()) return;
  auto it = stags_.find(task.itt);
  if (it == stags_.end() || !it->second.write_valid) {
    FailLater(absl::InvalidArgumentError(absl::StrFormat(
        "write command ITT 0x%08x needs solicited data but has no Write STag", task.itt)));
    return;
  }
  const Stags st = it->second;
  while (task.bursts.size() < max_outstanding_r2t_) {
    std::optional<target::OutgoingPdu> r2t = task.conn->BuildNextR2t(task);
    if (!r2t) return;
    auto wr = std::make_unique<Wr>();
    wr->kind = Wr::Kind::kRead;
    wr->opcode = rdma::WrOpcode::kRdmaRead;
    wr->itt = task.itt;
    wr->ttt = r2t->bhs.ttt();
    wr->offset = r2t->bhs.u32(pdu::field::kBufferOffset);
    wr->length = r2t->bhs.u32(pdu::field::kDesiredLength);
    // Zero copy: the Read lands in the task buffer at the burst's offset.
    auto region = ctx_->pool->LocalRegion(task.buffer.data(), task.edtl);
    if (!region.ok()) {
      FailLater(region.status());
      return;
    }
    wr->region = std::move(*region);
    if (!task.transport_state) {
      task.transport_state = std::make_shared<ReadSink>();
      task.on_destroy = [](target::Task& t) {
        // Reads still in flight hold the sink too: keep the buffer alive for them.
        auto sink = std::static_pointer_cast<ReadSink>(t.transport_state);
        if (sink.use_count() > 2) sink->orphaned = std::move(t.buffer);
      };
    }
    wr->sink = std::static_pointer_cast<ReadSink>(task.transport_state);
    wr->sge = {reinterpret_cast<uint64_t>(task.buffer.data() + wr->offset), wr->length,
               wr->region->lkey()};
    // TO = Write Base Offset + Buffer Offset; with TaggedBufferForSolicitedDataOnly the
    // tagged buffer starts at the first solicited byte (RFC 7145 sec 6.9, 7.3.5).
    uint64_t buffer_offset =
        tagged_solicited_only_ ? wr->offset - task.unsolicited_limit : wr->offset;
    wr->remote_addr = st.write_base + buffer_offset;
    wr->rkey = st.write_stag;
    ++rdma_reads_;
    PostSendWr(std::move(wr));
  }
}

void IserTargetConnection::OnReadDone(Wr* wr) {
  if (events_ == nullptr || (wr->sink && wr->sink->orphaned.data() != nullptr)) return;
  // Hand the burst to the core as the Data-Out PDU it stands for: the core checks it
  // against the burst it solicited; the bytes are already in the task buffer.
  pdu::ReceivedPdu p;
  p.bhs = Bhs::Make(Opcode::kDataOut, pdu::kFlagFinal);
  p.bhs.set_itt(wr->itt);
  p.bhs.set_ttt(wr->ttt);
  p.bhs.set_u32(pdu::field::kDataSn, 0);
  p.bhs.set_u32(pdu::field::kBufferOffset, wr->offset);
  p.bhs.set_data_segment_length(wr->length);
  p.data = {reinterpret_cast<uint8_t*>(wr->sge.addr), wr->length};
  p.placed = true;
  events_->OnPduReceived(std::move(p));
}

void IserTargetConnection::PostSendWr(std::unique_ptr<Wr> wr) {
  if (dead()) return;
  waiting_.push_back(std::move(wr));
  PumpSends();
}

void IserTargetConnection::PumpSends() {
  while (!dead() && !waiting_.empty() && sends_posted_ < options_.send_depth) {
    std::unique_ptr<Wr> wr = std::move(waiting_.front());
    waiting_.pop_front();
    rdma::SendWr s;
    s.wr_id = rdma::WrIdOf(wr.get());
    s.opcode = wr->opcode;
    s.send_flags = rdma::kSendSignaled;
    s.sg_list = {&wr->sge, wr->sge.length > 0 ? 1u : 0u};
    s.remote_addr = wr->remote_addr;
    s.rkey = wr->rkey;
    s.invalidate_rkey = wr->invalidate_rkey;
    if (wr->opcode == rdma::WrOpcode::kSend || wr->opcode == rdma::WrOpcode::kSendWithInv) ++sends_;
    Wr* raw = wr.get();
    inflight_.emplace(raw, std::move(wr));
    ++sends_posted_;
    if (absl::Status st = id_->qp()->PostSend(s); !st.ok()) {
      FailLater(st);
      return;
    }
  }
}

void IserTargetConnection::CloseAfterFlush() {
  if (closed_) return;
  close_after_flush_ = true;
  std::weak_ptr<bool> token = alive_;
  loop_->Post([this, token] {
    if (!token.expired()) MaybeFinishClose();
  });
}

void IserTargetConnection::MaybeFinishClose() {
  if (!close_after_flush_ || dead() || sends_posted_ > 0 || !waiting_.empty()) return;
  closed_ = true;
  (void)id_->Disconnect();
  if (events_ != nullptr) events_->OnTransportClosed(absl::OkStatus());
}

void IserTargetConnection::FailLater(const absl::Status& why) {
  // Called under the core (SendPdu, QueueDataIn, GetDataOut): reporting the close now
  // would free the task the core is still working on. Stop moving data and report from
  // the loop.
  if (dead()) return;
  fail_pending_ = true;
  waiting_.clear();
  std::weak_ptr<bool> token = alive_;
  loop_->Post([this, token, why] {
    if (token.expired()) return;
    Fail(why);
  });
}

void IserTargetConnection::Abort() { Fail(absl::AbortedError("closed by target")); }

void IserTargetConnection::OnCmDisconnected() {
  Fail(absl::UnavailableError("RDMA connection closed by peer"));
}

void IserTargetConnection::Fail(const absl::Status& why) {
  if (closed_) return;
  closed_ = true;
  if (!why.ok() && !absl::IsAborted(why))
    ISER_LOG(kInfo, "iser %s: %s", peer_, std::string(why.message()));
  if (fd_registered_) {
    comp_channel_->Unwatch(loop_);
    fd_registered_ = false;
  }
  waiting_.clear();
  (void)id_->Disconnect();
  if (events_ != nullptr) events_->OnTransportClosed(why);
}

}  // namespace iser::iser_transport
