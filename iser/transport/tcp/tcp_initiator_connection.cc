#include "iser/transport/tcp/tcp_initiator_connection.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "iser/base/logging.h"
#include "iser/pdu/digest.h"
#include "iser/transport/tcp/tcp_listener.h"

namespace iser::transport {
namespace {
constexpr size_t kStagingSize = 32 << 10;
constexpr size_t kDirectThreshold = 16 << 10;
constexpr uint32_t kLoginMaxSegment = 64 << 10;
constexpr int kMaxIov = 256;

// One connect() in progress: owns the socket until it connects, fails or times out.
struct PendingConnect {
  EventLoop* loop;
  UniqueFd fd;
  std::string portal;
  initiator::TransportConnectCallback done;
  EventLoop::TimerId timer = 0;

  void Finish(absl::StatusOr<std::unique_ptr<initiator::InitiatorTransport>> result) {
    loop->CancelTimer(timer);
    if (fd.valid()) loop->RemoveFd(fd.get());
    initiator::TransportConnectCallback cb = std::move(done);
    cb(std::move(result));
  }
};

void Succeed(std::shared_ptr<PendingConnect> pc) {
  int one = 1;
  setsockopt(pc->fd.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  int fd = pc->fd.get();
  pc->loop->RemoveFd(fd);
  EventLoop* loop = pc->loop;
  std::string portal = pc->portal;
  auto conn = std::make_unique<TcpInitiatorConnection>(loop, std::move(pc->fd), portal);
  pc->Finish(std::unique_ptr<initiator::InitiatorTransport>(std::move(conn)));
}

}  // namespace

void TcpInitiatorConnection::Connect(EventLoop* loop, const std::string& portal,
                                     absl::Duration timeout,
                                     initiator::TransportConnectCallback done) {
  auto addr = SocketAddress::Parse(portal);
  if (!addr.ok()) {
    loop->Defer([done, s = addr.status()] { done(s); });
    return;
  }
  auto pc = std::make_shared<PendingConnect>();
  pc->loop = loop;
  pc->portal = portal;
  pc->done = std::move(done);
  pc->fd.Reset(::socket(addr->storage.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!pc->fd.valid()) {
    absl::Status s = absl::InternalError(absl::StrCat("socket: ", std::strerror(errno)));
    loop->Defer([pc, s] { pc->Finish(s); });
    return;
  }
  int rc = ::connect(pc->fd.get(), reinterpret_cast<const sockaddr*>(&addr->storage),
                     addr->length);
  if (rc == 0) {
    loop->Defer([pc] { Succeed(pc); });
    return;
  }
  if (errno != EINPROGRESS) {
    absl::Status s = absl::UnavailableError(
        absl::StrCat("cannot connect to ", portal, ": ", std::strerror(errno)));
    pc->fd.Reset();
    loop->Defer([pc, s] { pc->Finish(s); });
    return;
  }
  absl::Status s = loop->AddFd(pc->fd.get(), EPOLLOUT, [pc](uint32_t) {
    if (!pc->done) return;
    int err = 0;
    socklen_t len = sizeof(err);
    getsockopt(pc->fd.get(), SOL_SOCKET, SO_ERROR, &err, &len);
    if (err != 0) {
      pc->Finish(absl::UnavailableError(
          absl::StrCat("cannot connect to ", pc->portal, ": ", std::strerror(err))));
      pc->fd.Reset();
      return;
    }
    Succeed(pc);
  });
  if (!s.ok()) {
    pc->fd.Reset();
    loop->Defer([pc, s] { pc->Finish(s); });
    return;
  }
  pc->timer = loop->RunAfter(timeout, [pc] {
    if (!pc->done) return;
    pc->timer = 0;
    pc->Finish(absl::UnavailableError(absl::StrCat("cannot connect to ", pc->portal,
                                                   ": timed out")));
    pc->fd.Reset();
  });
}

initiator::TransportFactory TcpTransportFactory() {
  return [](EventLoop* loop, const std::string& portal, absl::Duration timeout,
            initiator::TransportConnectCallback done) {
    TcpInitiatorConnection::Connect(loop, portal, timeout, std::move(done));
  };
}

TcpInitiatorConnection::TcpInitiatorConnection(EventLoop* loop, UniqueFd fd, std::string peer)
    : loop_(loop), fd_(std::move(fd)), peer_(std::move(peer)) {
  staging_.resize(kStagingSize);
  reader_.set_max_data_segment(kLoginMaxSegment);
}

TcpInitiatorConnection::~TcpInitiatorConnection() {
  if (watching_ && fd_.valid()) loop_->RemoveFd(fd_.get());
}

void TcpInitiatorConnection::SetEvents(initiator::InitiatorTransportEvents* events) {
  events_ = events;
  if (events_ == nullptr || closed_ || watching_) return;
  reader_.set_placement([this](const pdu::Bhs& bhs, std::span<const uint8_t>) {
    return events_ != nullptr ? events_->PlaceData(bhs) : std::span<uint8_t>();
  });
  absl::Status s = loop_->AddFd(fd_.get(), EPOLLIN | EPOLLRDHUP,
                                [this](uint32_t ev) { OnEvents(ev); });
  if (!s.ok()) return Fail(s);
  watching_ = true;
}

void TcpInitiatorConnection::ApplyParams(const login::OperationalParams& params) {
  header_digest_ = params.header_digest;
  data_digest_ = params.data_digest;
  max_send_segment_ = std::max<uint32_t>(512, params.target_max_recv_dsl);
  reader_.set_header_digest(header_digest_);
  reader_.set_data_digest(data_digest_);
  reader_.set_max_data_segment(std::max(params.initiator_max_recv_dsl, kLoginMaxSegment));
}

void TcpInitiatorConnection::OnEvents(uint32_t events) {
  if (closed_) return;
  if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) HandleReadable();
  if (closed_) return;
  if (events & EPOLLOUT) Flush();
}

void TcpInitiatorConnection::HandleReadable() {
  for (int round = 0; round < 32 && !closed_; ++round) {
    std::span<uint8_t> direct = reader_.DirectSpan();
    if (staging_begin_ == staging_end_ && direct.size() >= kDirectThreshold) {
      ssize_t n = ::recv(fd_.get(), direct.data(), direct.size(), 0);
      if (n > 0) {
        bytes_received_ += n;
        bool complete = false;
        absl::Status s = reader_.DirectAdvance(static_cast<size_t>(n), &complete);
        if (!s.ok()) return Fail(s);
        if (complete) Deliver();
        continue;  // the rest of the segment may be in already: read until EAGAIN
        continue;
      }
      if (n == 0) return Fail(absl::UnavailableError("connection closed by target"));
      if (errno == EAGAIN || errno == EWOULDBLOCK) return;
      if (errno == EINTR) continue;
      return Fail(absl::UnavailableError(absl::StrCat("recv: ", std::strerror(errno))));
    }
    if (staging_begin_ == staging_end_) staging_begin_ = staging_end_ = 0;
    size_t room = staging_.size() - staging_end_;
    ssize_t n = ::recv(fd_.get(), staging_.data() + staging_end_, room, 0);
    if (n > 0) {
      bytes_received_ += n;
      staging_end_ += static_cast<size_t>(n);
      if (!FeedStaging()) return;
      if (static_cast<size_t>(n) < room) return;
      continue;
    }
    if (n == 0) return Fail(absl::UnavailableError("connection closed by target"));
    if (errno == EAGAIN || errno == EWOULDBLOCK) return;
    if (errno == EINTR) continue;
    return Fail(absl::UnavailableError(absl::StrCat("recv: ", std::strerror(errno))));
  }
}

bool TcpInitiatorConnection::FeedStaging() {
  while (staging_begin_ < staging_end_ && !closed_) {
    bool complete = false;
    auto used = reader_.Feed({staging_.data() + staging_begin_, staging_end_ - staging_begin_},
                             &complete);
    if (!used.ok()) {
      Fail(used.status());
      return false;
    }
    staging_begin_ += *used;
    if (complete) Deliver();
  }
  if (staging_begin_ == staging_end_) staging_begin_ = staging_end_ = 0;
  return !closed_;
}

void TcpInitiatorConnection::Deliver() {
  pdu::ReceivedPdu pdu = reader_.TakePdu();
  if (events_ != nullptr) events_->OnPduReceived(std::move(pdu));
}

void TcpInitiatorConnection::SendPdu(initiator::OutgoingPdu pdu) {
  if (closed_) return;
  Wire w;
  w.pdu = std::move(pdu);
  if (!w.pdu.owned.empty() && w.pdu.data.data() != w.pdu.owned.data()) w.pdu.data = w.pdu.owned;
  uint32_t dsl = static_cast<uint32_t>(w.pdu.data.size());
  w.pdu.bhs.set_data_segment_length(dsl);
  w.total = pdu::kBhsSize;
  if (header_digest_) {
    pdu::StoreDigest(pdu::ComputeCrc32c({w.pdu.bhs.data(), pdu::kBhsSize}), w.header_digest);
    w.has_header_digest = true;
    w.total += 4;
  }
  if (dsl > 0) {
    size_t pad = pdu::PaddedLength(dsl) - dsl;
    std::memset(w.trailer, 0, sizeof(w.trailer));
    w.trailer_len = pad;
    if (data_digest_) {
      pdu::Crc32c crc;
      crc.Update(w.pdu.data);
      crc.Update({w.trailer, pad});
      pdu::StoreDigest(crc.Final(), w.trailer + pad);
      w.trailer_len += 4;
    }
    w.total += dsl + w.trailer_len;
  }
  send_queue_.push_back(std::move(w));
  ScheduleFlush();
}

void TcpInitiatorConnection::SendCommand(initiator::OutgoingPdu cmd, initiator::TaskIo&) {
  SendPdu(std::move(cmd));
}

void TcpInitiatorConnection::SendDataOut(initiator::TaskIo& io, uint32_t ttt, uint32_t offset,
                                         uint32_t length, uint32_t exp_stat_sn) {
  uint32_t data_sn = 0;
  while (length > 0) {
    uint32_t seg = std::min(length, max_send_segment_);
    bool last = seg == length;
    initiator::OutgoingPdu p;
    p.bhs = pdu::Bhs::Make(pdu::Opcode::kDataOut, last ? pdu::kFlagFinal : 0);
    p.bhs.set_lun_field(io.lun_field);
    p.bhs.set_itt(io.itt);
    p.bhs.set_ttt(ttt);
    p.bhs.set_u32(pdu::field::kExpStatSn, exp_stat_sn);
    p.bhs.set_u32(pdu::field::kDataSn, data_sn++);
    p.bhs.set_u32(pdu::field::kBufferOffset, offset);
    p.data = io.write.subspan(offset, seg);  // zero copy: the caller's buffer
    SendPdu(std::move(p));
    offset += seg;
    length -= seg;
  }
}

void TcpInitiatorConnection::ScheduleFlush() {
  if (flush_scheduled_ || want_writable_) return;
  flush_scheduled_ = true;
  std::weak_ptr<int> alive = life_;
  loop_->Defer([this, alive] {
    if (!alive.lock()) return;
    flush_scheduled_ = false;
    if (!closed_) Flush();
  });
}

void TcpInitiatorConnection::Flush() {
  while (!send_queue_.empty() && !closed_) {
    iovec iov[kMaxIov];
    int n_iov = 0;
    size_t skip = front_sent_;
    for (auto it = send_queue_.begin(); it != send_queue_.end() && n_iov + 4 <= kMaxIov; ++it) {
      Wire& w = *it;
      auto add = [&](const void* p, size_t len) {
        if (len == 0) return;
        if (skip >= len) {
          skip -= len;
          return;
        }
        iov[n_iov].iov_base = const_cast<uint8_t*>(static_cast<const uint8_t*>(p) + skip);
        iov[n_iov].iov_len = len - skip;
        skip = 0;
        n_iov++;
      };
      add(w.pdu.bhs.data(), pdu::kBhsSize);
      if (w.has_header_digest) add(w.header_digest, 4);
      add(w.pdu.data.data(), w.pdu.data.size());
      add(w.trailer, w.trailer_len);
    }
    msghdr msg{};
    msg.msg_iov = iov;
    msg.msg_iovlen = static_cast<size_t>(n_iov);
    // MSG_NOSIGNAL: a target that went away is an error to recover from, not a SIGPIPE.
    ssize_t n = ::sendmsg(fd_.get(), &msg, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        if (!want_writable_) {
          want_writable_ = true;
          (void)loop_->ModifyFd(fd_.get(), EPOLLIN | EPOLLRDHUP | EPOLLOUT);
        }
        return;
      }
      return Fail(absl::UnavailableError(absl::StrCat("sendmsg: ", std::strerror(errno))));
    }
    bytes_sent_ += static_cast<uint64_t>(n);
    size_t done = front_sent_ + static_cast<size_t>(n);
    while (!send_queue_.empty() && done >= send_queue_.front().total) {
      done -= send_queue_.front().total;
      send_queue_.pop_front();
    }
    front_sent_ = done;
  }
  if (send_queue_.empty() && want_writable_) {
    want_writable_ = false;
    (void)loop_->ModifyFd(fd_.get(), EPOLLIN | EPOLLRDHUP);
  }
}

void TcpInitiatorConnection::Abort(const absl::Status& why) { Fail(why); }

void TcpInitiatorConnection::Fail(const absl::Status& why) {
  if (closed_) return;
  closed_ = true;
  if (watching_) loop_->RemoveFd(fd_.get());
  watching_ = false;
  ::shutdown(fd_.get(), SHUT_RDWR);
  fd_.Reset();
  send_queue_.clear();
  // Tell the session after this call returns (it may be inside a call into us).
  std::weak_ptr<int> alive = life_;
  loop_->Defer([this, alive, why] {
    if (alive.lock() && events_ != nullptr) events_->OnTransportClosed(why);
  });
}

}  // namespace iser::transport
