#include "iser/transport/rdma/softiwarp/cm.h"

#include <arpa/inet.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>
#include <string_view>

#include "absl/strings/str_cat.h"
#include "iser/base/logging.h"

namespace iser::softiwarp {

using rdma::CmEventType;

namespace {

absl::Status Errno(absl::string_view what) {
  return absl::InternalError(absl::StrCat(what, ": ", std::strerror(errno)));
}

void SetNoDelay(int fd) {
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

MpaLocal LocalFor(const SoftIwarpOptions& o, const rdma::ConnParam& p) {
  MpaLocal l;
  l.crc = o.crc;
  l.enhanced = o.enhanced;
  l.peer_to_peer = o.peer_to_peer;
  l.ird = p.responder_resources;
  l.ord = p.initiator_depth;
  return l;
}

std::string SocketName(int fd, bool peer) {
  sockaddr_storage ss{};
  socklen_t len = sizeof(ss);
  int rc = peer ? getpeername(fd, reinterpret_cast<sockaddr*>(&ss), &len)
                : getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len);
  if (rc != 0) return "?";
  char buf[INET6_ADDRSTRLEN] = {0};
  if (ss.ss_family == AF_INET) {
    auto* v4 = reinterpret_cast<sockaddr_in*>(&ss);
    inet_ntop(AF_INET, &v4->sin_addr, buf, sizeof(buf));
    return absl::StrCat(buf, ":", ntohs(v4->sin_port));
  }
  if (ss.ss_family == AF_INET6) {
    auto* v6 = reinterpret_cast<sockaddr_in6*>(&ss);
    inet_ntop(AF_INET6, &v6->sin6_addr, buf, sizeof(buf));
    return absl::StrCat("[", buf, "]:", ntohs(v6->sin6_port));
  }
  return "?";
}

// Serves bytes read before a socket was adopted, then the socket itself.
class PrereadThenFd final : public ByteSource {
 public:
  PrereadThenFd(const std::vector<uint8_t>& pre, size_t* pos, int fd)
      : pre_(pre), pos_(pos), fd_(fd) {}
  ssize_t Readv(const iovec* iov, int iovcnt) override {
    if (*pos_ >= pre_.size()) return fd_.Readv(iov, iovcnt);
    size_t n = 0;
    for (int i = 0; i < iovcnt && *pos_ < pre_.size(); ++i) {
      size_t take = std::min(iov[i].iov_len, pre_.size() - *pos_);
      std::memcpy(iov[i].iov_base, pre_.data() + *pos_, take);
      *pos_ += take;
      n += take;
      if (take < iov[i].iov_len) break;
    }
    return static_cast<ssize_t>(n);
  }

 private:
  const std::vector<uint8_t>& pre_;
  size_t* pos_;
  FdByteIo fd_;
};

}  // namespace

// ---------------------------------------------------------------- event channel

absl::StatusOr<std::unique_ptr<SoftCmEventChannel>> SoftCmEventChannel::Create(SoftDevice* device) {
  UniqueFd fd(eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
  if (!fd) return Errno("eventfd");
  return std::unique_ptr<SoftCmEventChannel>(new SoftCmEventChannel(device, std::move(fd)));
}

absl::StatusOr<std::unique_ptr<rdma::CmId>> SoftCmEventChannel::CreateId(void* context) {
  return std::unique_ptr<rdma::CmId>(new SoftCmId(this, context));
}

absl::StatusOr<rdma::CmEvent> SoftCmEventChannel::GetEvent() {
  if (events_.empty()) {
    DrainFd();  // never leave the fd readable with nothing to get: its loop would spin
    return absl::UnavailableError("no CM event");
  }
  rdma::CmEvent e = std::move(events_.front());
  events_.pop_front();
  if (events_.empty()) DrainFd();
  return e;
}

void SoftCmEventChannel::DrainFd() {
  uint64_t v;
  [[maybe_unused]] ssize_t n = ::read(fd_.get(), &v, sizeof(v));
}

void SoftCmEventChannel::Push(rdma::CmEvent event) {
  events_.push_back(std::move(event));
  uint64_t one = 1;
  [[maybe_unused]] ssize_t n = ::write(fd_.get(), &one, sizeof(one));
}

void SoftCmEventChannel::Forget(rdma::CmId* id) {
  std::erase_if(events_, [id](const rdma::CmEvent& e) { return e.id == id || e.listen_id == id; });
  // The id's events may have been all there was (e.g. DISCONNECTED of a connection torn
  // down before its owner got to it): the fd must not stay readable for nothing.
  if (events_.empty()) DrainFd();
}

// ---------------------------------------------------------------- CM id

SoftCmId::SoftCmId(SoftCmEventChannel* channel, void* context)
    : channel_(channel), device_(channel->device()), loop_(channel->device()->loop()) {
  set_context(context);
}

SoftCmId::~SoftCmId() {
  CancelTimer();
  qp_.reset();
  DropFd();
  pending_.clear();
  channel_->Forget(this);
}

void SoftCmId::DropFd() {
  if (fd_registered_) {
    loop_->RemoveFd(fd_.get());
    fd_registered_ = false;
  }
  fd_.Reset();
}

void SoftCmId::ArmTimer(absl::Duration d) {
  CancelTimer();
  std::weak_ptr<bool> token = alive_;
  timer_ = loop_->RunAfter(d, [this, token] {
    if (token.expired()) return;
    timer_.reset();
    if (state_ == State::kAwaitReply || state_ == State::kTcpConnecting) {
      Fail(state_ == State::kTcpConnecting ? CmEventType::kUnreachable : CmEventType::kConnectError,
           -ETIMEDOUT, false);
    } else if (state_ == State::kAwaitRequest) {
      Fail(CmEventType::kConnectError, -ETIMEDOUT, true);
    }
  });
}

void SoftCmId::CancelTimer() {
  if (timer_) loop_->CancelTimer(*timer_);
  timer_.reset();
}

void SoftCmId::Emit(CmEventType type, int status, rdma::ConnParam param) {
  rdma::CmEvent e;
  e.type = type;
  e.id = this;
  e.status = status;
  e.param = std::move(param);
  channel_->Push(std::move(e));
}

void SoftCmId::Fail(CmEventType type, int status, bool passive_pending) {
  CancelTimer();
  DropFd();
  State prev = state_;
  state_ = State::kClosed;
  if (passive_pending) return;  // never reported: the listener sweeps it
  if (prev != State::kClosed) Emit(type, status);
}

uint32_t SoftCmId::Mulpdu() const {
  if (device_->options().mulpdu != 0) return std::max<uint32_t>(device_->options().mulpdu, 128);
  int mss = 0;
  socklen_t len = sizeof(mss);
  if (fd_ && getsockopt(fd_.get(), IPPROTO_TCP, TCP_MAXSEG, &mss, &len) == 0 && mss > 0)
    return MulpduForEmss(static_cast<uint32_t>(mss));
  return MulpduForEmss(1460);
}

absl::Status SoftCmId::Listen(const sockaddr_in& addr, int backlog) {
  if (state_ != State::kIdle) return absl::FailedPreconditionError("id in use");
  UniqueFd fd(socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!fd) return Errno("socket");
  int one = 1;
  setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (bind(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) != 0)
    return Errno("bind");
  if (listen(fd.get(), backlog) != 0) return Errno("listen");
  sockaddr_in bound{};
  socklen_t len = sizeof(bound);
  getsockname(fd.get(), reinterpret_cast<sockaddr*>(&bound), &len);
  local_port_ = ntohs(bound.sin_port);
  fd_ = std::move(fd);
  absl::Status s = loop_->AddFd(fd_.get(), EPOLLIN, [this](uint32_t) { OnListenReadable(); });
  if (!s.ok()) return s;
  fd_registered_ = true;
  state_ = State::kListening;
  return absl::OkStatus();
}

void SoftCmId::OnListenReadable() {
  std::erase_if(pending_, [](const auto& c) { return c->state_ == State::kClosed; });
  for (;;) {
    int c = accept4(fd_.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (c < 0) return;
    auto child = std::make_unique<SoftCmId>(channel_, context());
    SoftCmId* raw = child.get();
    pending_.push_back(std::move(child));
    raw->StartPassive(this, UniqueFd(c));
  }
}

absl::Status SoftCmId::ListenOnAdoptedSockets() {
  if (state_ != State::kIdle) return absl::FailedPreconditionError("id in use");
  state_ = State::kListening;
  return absl::OkStatus();
}

absl::Status SoftCmId::AdoptAcceptedSocket(UniqueFd fd, std::vector<uint8_t> preread) {
  if (state_ != State::kListening) return absl::FailedPreconditionError("id is not listening");
  if (!fd) return absl::InvalidArgumentError("no socket");
  std::erase_if(pending_, [](const auto& c) { return c->state_ == State::kClosed; });
  auto child = std::make_unique<SoftCmId>(channel_, context());
  SoftCmId* raw = child.get();
  pending_.push_back(std::move(child));
  raw->StartPassive(this, std::move(fd), std::move(preread));
  // Bytes already in hand may hold the whole Request: don't wait for the socket.
  if (raw->state_ == State::kAwaitRequest && !raw->preread_.empty()) raw->OnRequestFrame();
  return absl::OkStatus();
}

void SoftCmId::StartPassive(SoftCmId* listener, UniqueFd fd, std::vector<uint8_t> preread) {
  listener_ = listener;
  fd_ = std::move(fd);
  preread_ = std::move(preread);
  preread_pos_ = 0;
  peer_address_ = SocketName(fd_.get(), true);
  local_address_ = SocketName(fd_.get(), false);
  SetNoDelay(fd_.get());
  state_ = State::kAwaitRequest;
  reader_.emplace(/*expect_reply=*/false);
  absl::Status s = loop_->AddFd(fd_.get(), EPOLLIN, [this](uint32_t ev) { OnHandshakeEvent(ev); });
  if (!s.ok()) {
    Fail(CmEventType::kConnectError, -EIO, true);
    return;
  }
  fd_registered_ = true;
  ArmTimer(device_->options().request_timeout);
}

void SoftCmId::PromoteChild(SoftCmId* child) {
  for (auto it = pending_.begin(); it != pending_.end(); ++it) {
    if (it->get() != child) continue;
    rdma::CmEvent e;
    e.type = CmEventType::kConnectRequest;
    e.id = child;
    e.listen_id = this;
    e.param.private_data = child->request_.private_data;
    e.param.responder_resources =
        static_cast<uint8_t>(std::min<uint16_t>(child->request_.ird, 255));
    e.param.initiator_depth = static_cast<uint8_t>(std::min<uint16_t>(child->request_.ord, 255));
    e.new_id = std::move(*it);
    pending_.erase(it);
    child->listener_ = nullptr;
    channel_->Push(std::move(e));
    return;
  }
}

absl::Status SoftCmId::ResolveAddr(const sockaddr_in& dst, absl::Duration) {
  if (state_ != State::kIdle) return absl::FailedPreconditionError("id in use");
  dst_ = dst;
  state_ = State::kAddrResolved;
  Emit(CmEventType::kAddrResolved, 0);
  return absl::OkStatus();
}

absl::Status SoftCmId::ResolveRoute(absl::Duration) {
  if (state_ != State::kAddrResolved) return absl::FailedPreconditionError("address not resolved");
  state_ = State::kRouteResolved;
  Emit(CmEventType::kRouteResolved, 0);
  return absl::OkStatus();
}

absl::Status SoftCmId::CreateQp(rdma::ProtectionDomain* pd, const rdma::QpInitAttr& attr) {
  if (qp_) return absl::AlreadyExistsError("id already has a QP");
  if (pd == nullptr || attr.send_cq == nullptr || attr.recv_cq == nullptr)
    return absl::InvalidArgumentError("PD and both CQs are required");
  qp_ = std::make_unique<SoftQp>(static_cast<SoftPd*>(pd), attr);
  return absl::OkStatus();
}

absl::Status SoftCmId::Connect(const rdma::ConnParam& param) {
  if (state_ != State::kRouteResolved && state_ != State::kAddrResolved)
    return absl::FailedPreconditionError("resolve the address first");
  if (!qp_) return absl::FailedPreconditionError("create the QP first");
  if (param.private_data.size() + 4 > device_->options().max_private_data)
    return absl::InvalidArgumentError("private data too long");
  local_param_ = param;
  UniqueFd fd(socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!fd) return Errno("socket");
  SetNoDelay(fd.get());
  if (connect(fd.get(), reinterpret_cast<const sockaddr*>(&dst_), sizeof(dst_)) != 0 &&
      errno != EINPROGRESS)
    return Errno("connect");
  fd_ = std::move(fd);
  state_ = State::kTcpConnecting;
  absl::Status s = loop_->AddFd(fd_.get(), EPOLLOUT, [this](uint32_t ev) { OnHandshakeEvent(ev); });
  if (!s.ok()) return s;
  fd_registered_ = true;
  ArmTimer(device_->options().reply_timeout);
  return absl::OkStatus();
}

void SoftCmId::QueueFrame(std::vector<uint8_t> bytes) {
  out_ = std::move(bytes);
  out_sent_ = 0;
}

bool SoftCmId::FlushFrame() {
  while (out_sent_ < out_.size()) {
    ssize_t n = ::send(fd_.get(), out_.data() + out_sent_, out_.size() - out_sent_,
                       MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN) {
        (void)loop_->ModifyFd(fd_.get(), EPOLLIN | EPOLLOUT);
        return false;
      }
      return false;
    }
    out_sent_ += static_cast<size_t>(n);
  }
  out_.clear();
  out_sent_ = 0;
  return true;
}

void SoftCmId::OnHandshakeEvent(uint32_t events) {
  switch (state_) {
    case State::kTcpConnecting: {
      int err = 0;
      socklen_t len = sizeof(err);
      getsockopt(fd_.get(), SOL_SOCKET, SO_ERROR, &err, &len);
      if (err != 0 || (events & (EPOLLERR | EPOLLHUP))) {
        Fail(CmEventType::kUnreachable, -(err ? err : ECONNREFUSED), false);
        return;
      }
      OnConnected();
      return;
    }
    case State::kAwaitReply:
      if (!out_.empty() && !FlushFrame()) return;
      (void)loop_->ModifyFd(fd_.get(), EPOLLIN);
      if (events & (EPOLLIN | EPOLLHUP | EPOLLERR)) OnReplyFrame();
      return;
    case State::kAwaitRequest:
      OnRequestFrame();
      return;
    case State::kSendingReply:
      if (FlushFrame()) {
        if (close_after_flush_) {
          DropFd();
          state_ = State::kClosed;
        } else {
          QpConnParams p;
          p.crc = negotiated_.crc;
          p.ird = negotiated_.ird;
          p.ord = negotiated_.ord;
          p.mulpdu = Mulpdu();
          p.hold_tx_until_rx = true;
          EnterEstablished(p);
        }
      }
      return;
    default:
      return;
  }
}

void SoftCmId::OnConnected() {
  MpaLocal local = LocalFor(device_->options(), local_param_);
  request_ = MakeMpaRequest(local, local_param_.private_data);
  auto bytes = EncodeMpaFrame(request_, device_->options().max_private_data);
  if (!bytes.ok()) {
    Fail(CmEventType::kConnectError, -EINVAL, false);
    return;
  }
  QueueFrame(std::move(*bytes));
  state_ = State::kAwaitReply;
  reader_.emplace(/*expect_reply=*/true);
  (void)loop_->ModifyFd(fd_.get(), EPOLLIN);
  if (!FlushFrame() && !out_.empty()) return;  // waits for EPOLLOUT
}

void SoftCmId::OnReplyFrame() {
  FdByteIo io(fd_.get());
  MpaFrameReader::Outcome o = reader_->Pump(io);
  if (o == MpaFrameReader::Outcome::kNeedMore) return;
  if (o != MpaFrameReader::Outcome::kDone) {
    ISER_LOG(kWarning, "softiwarp: bad MPA reply: %s", reader_->error().ToString());
    Fail(CmEventType::kConnectError, -ECONNRESET, false);
    return;
  }
  CancelTimer();
  const MpaFrame& reply = reader_->frame();
  if (reply.reject) {
    rdma::ConnParam p;
    p.private_data = reply.private_data;
    DropFd();
    state_ = State::kClosed;
    Emit(CmEventType::kRejected, -ECONNREFUSED, std::move(p));
    return;
  }
  auto n = ProcessMpaReply(request_, reply);
  if (!n.ok()) {
    ISER_LOG(kWarning, "softiwarp: MPA reply refused: %s", n.status().ToString());
    Fail(CmEventType::kConnectError, -EPROTO, false);
    return;
  }
  negotiated_ = *n;
  QpConnParams p;
  p.crc = n->crc;
  p.ird = n->ird;
  p.ord = n->ord;
  p.mulpdu = Mulpdu();
  p.send_rtr = n->rtr;
  rdma::ConnParam peer;
  peer.private_data = reply.private_data;
  peer.responder_resources = static_cast<uint8_t>(std::min<uint16_t>(reply.ird, 255));
  peer.initiator_depth = static_cast<uint8_t>(std::min<uint16_t>(reply.ord, 255));
  local_param_ = peer;  // reported with ESTABLISHED
  EnterEstablished(p);
}

void SoftCmId::OnRequestFrame() {
  PrereadThenFd io(preread_, &preread_pos_, fd_.get());
  MpaFrameReader::Outcome o = reader_->Pump(io);
  if (o == MpaFrameReader::Outcome::kNeedMore) return;
  SoftCmId* listener = listener_;
  if (o != MpaFrameReader::Outcome::kDone) {
    ISER_LOG(kWarning, "softiwarp: bad MPA request: %s", reader_->error().ToString());
    Fail(CmEventType::kConnectError, -ECONNRESET, true);
    return;
  }
  CancelTimer();
  if (preread_pos_ < preread_.size()) {
    // The initiator must wait for the Reply before sending FPDUs (RFC 5044 sec 7.1.2).
    ISER_LOG(kWarning, "softiwarp: bytes after the MPA request before the reply");
    Fail(CmEventType::kConnectError, -EPROTO, true);
    return;
  }
  preread_.clear();
  preread_.shrink_to_fit();
  request_ = reader_->frame();
  if (request_.markers) {
    // As siw: markers unsupported, answer with R=1 and close.
    auto bytes = EncodeMpaFrame(MakeMpaReply(request_, {}, {}, true, nullptr));
    if (bytes.ok()) QueueFrame(std::move(*bytes));
    close_after_flush_ = true;
    state_ = State::kSendingReply;
    if (FlushFrame()) {
      DropFd();
      state_ = State::kClosed;
    }
    return;
  }
  state_ = State::kRequestDelivered;
  (void)loop_->ModifyFd(fd_.get(), 0);  // the first FPDU waits for the QP
  if (listener != nullptr) listener->PromoteChild(this);
}

absl::Status SoftCmId::Accept(const rdma::ConnParam& param) {
  if (state_ != State::kRequestDelivered) return absl::FailedPreconditionError("no request");
  if (!qp_) return absl::FailedPreconditionError("create the QP first");
  MpaLocal local = LocalFor(device_->options(), param);
  MpaFrame reply = MakeMpaReply(request_, local, param.private_data, false, &negotiated_);
  auto bytes = EncodeMpaFrame(reply, device_->options().max_private_data);
  if (!bytes.ok()) return bytes.status();
  local_param_.private_data.clear();
  local_param_.responder_resources = static_cast<uint8_t>(std::min<uint16_t>(request_.ird, 255));
  local_param_.initiator_depth = static_cast<uint8_t>(std::min<uint16_t>(request_.ord, 255));
  QueueFrame(std::move(*bytes));
  state_ = State::kSendingReply;
  OnHandshakeEvent(EPOLLOUT);
  return absl::OkStatus();
}

absl::Status SoftCmId::Reject(std::span<const uint8_t> private_data) {
  if (state_ != State::kRequestDelivered) return absl::FailedPreconditionError("no request");
  MpaFrame reply = MakeMpaReply(request_, {}, private_data, true, nullptr);
  auto bytes = EncodeMpaFrame(reply, device_->options().max_private_data);
  if (!bytes.ok()) return bytes.status();
  QueueFrame(std::move(*bytes));
  close_after_flush_ = true;
  state_ = State::kSendingReply;
  OnHandshakeEvent(EPOLLOUT);
  return absl::OkStatus();
}

void SoftCmId::EnterEstablished(const QpConnParams& params) {
  CancelTimer();
  if (fd_registered_) {
    loop_->RemoveFd(fd_.get());
    fd_registered_ = false;
  }
  state_ = State::kEstablished;
  absl::Status s = qp_->Start(std::move(fd_), params, [this] {
    if (state_ == State::kClosed) return;
    state_ = State::kClosed;
    Emit(CmEventType::kDisconnected, 0);
  });
  if (!s.ok()) {
    Fail(CmEventType::kConnectError, -EIO, false);
    return;
  }
  if (state_ == State::kEstablished) Emit(CmEventType::kEstablished, 0, local_param_);
}

absl::Status SoftCmId::Disconnect() {
  if (state_ == State::kEstablished && qp_) {
    qp_->Disconnect();  // on_closed emits DISCONNECTED
    return absl::OkStatus();
  }
  if (state_ == State::kClosed) return absl::OkStatus();
  DropFd();
  state_ = State::kClosed;
  return absl::OkStatus();
}

}  // namespace iser::softiwarp
