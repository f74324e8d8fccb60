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
// Login PDUs carry at most 8192 bytes (RFC 7143 sec 13.12); be lenient.
constexpr uint32_t kLoginMaxSegment = 64 << 10;

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
  int rc = ::connect(pc->fd.get(), reinterpret_cast<const sockaddr*>(&addr->storage), addr->length);
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
    pc->Finish(
        absl::UnavailableError(absl::StrCat("cannot connect to ", pc->portal, ": timed out")));
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
    : loop_(loop), stream_(loop, std::move(fd), {}, kStagingSize), peer_(std::move(peer)) {}

TcpInitiatorConnection::~TcpInitiatorConnection() = default;

void TcpInitiatorConnection::SetEvents(initiator::InitiatorTransportEvents* events) {
  events_ = events;
  if (events_ == nullptr || started_ || stream_.closed()) return;
  started_ = true;
  PduStream::Callbacks cb;
  cb.place_data = [this](const pdu::Bhs& bhs) {
    return events_ != nullptr ? events_->PlaceData(bhs) : std::span<uint8_t>();
  };
  cb.on_pdu = [this](pdu::ReceivedPdu pdu) {
    if (events_ != nullptr) events_->OnPduReceived(std::move(pdu));
  };
  cb.on_closed = [this](const absl::Status& why) {
    absl::Status reason = why.ok() ? absl::UnavailableError("connection closed by target") : why;
    // Tell the session after this call returns (it may be inside a call into us).
    std::weak_ptr<int> alive = life_;
    loop_->Defer([this, alive, reason] {
      if (alive.lock() && events_ != nullptr) events_->OnTransportClosed(reason);
    });
  };
  if (absl::Status s = stream_.Start(std::move(cb)); !s.ok()) stream_.Close(s);
}

void TcpInitiatorConnection::ApplyParams(const login::OperationalParams& params) {
  stream_.SetDigests(params.header_digest, params.data_digest);
  stream_.SetMaxReceiveSegment(std::max(params.initiator_max_recv_dsl, kLoginMaxSegment));
  max_send_segment_ = std::max<uint32_t>(512, params.target_max_recv_dsl);
}

void TcpInitiatorConnection::SendPdu(initiator::OutgoingPdu pdu) {
  pdu::OutgoingPdu out;
  out.bhs = pdu.bhs;
  if (!pdu.owned.empty()) {
    out.SetOwnedData(std::move(pdu.owned));  // `data` may point at the moved-from vector
  } else {
    out.data = pdu.data;  // zero copy: a caller buffer that outlives the send
  }
  stream_.Send(std::move(out));
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

void TcpInitiatorConnection::Abort(const absl::Status& why) { stream_.Close(why); }

}  // namespace iser::transport
