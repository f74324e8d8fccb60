#include "iser/transport/iser/iser_portal.h"

#include <sys/socket.h>

#include <cerrno>

#include "absl/strings/str_cat.h"
#include "iser/base/logging.h"
#include "iser/transport/rdma/softiwarp/cm.h"
#include "iser/transport/rdma/softiwarp/softiwarp.h"
#include "iser/transport/tcp/tcp_connection.h"

namespace iser::iser_transport {

const char* PortalTransportName(PortalTransport t) {
  switch (t) {
    case PortalTransport::kTcp:
      return "tcp";
    case PortalTransport::kIser:
      return "iser";
    case PortalTransport::kAny:
      return "any";
  }
  return "?";
}

absl::StatusOr<PortalTransport> ParsePortalTransport(absl::string_view text) {
  if (text == "tcp") return PortalTransport::kTcp;
  if (text == "iser") return PortalTransport::kIser;
  if (text == "any") return PortalTransport::kAny;
  return absl::InvalidArgumentError(
      absl::StrCat("unknown transport '", text, "': want tcp, iser or any"));
}

absl::StatusOr<std::unique_ptr<Portal>> Portal::Create(EventLoop* loop, target::Target* target,
                                                       absl::string_view address,
                                                       PortalOptions options) {
  // Receive buffers must hold what the login lets the initiator send.
  const login::OperationalParams& offer = target->options().offer;
  options.iser.recv_data_segment = std::max(options.iser.recv_data_segment, offer.target_recv_dsl);
  // Every iSER connection posts recv_depth buffers of that size: keep it bounded.
  if (uint64_t{options.iser.recv_data_segment} * options.iser.recv_depth >
      kMaxRecvBytesPerConnection)
    return absl::InvalidArgumentError(
        absl::StrCat("TargetRecvDataSegmentLength ", options.iser.recv_data_segment, " x ",
                     options.iser.recv_depth, " receive buffers is more than ",
                     kMaxRecvBytesPerConnection >> 20, " MiB per iSER connection"));
  if (offer.target_max_ahs_length != 0)
    options.iser.max_ahs = std::min<uint32_t>(
        1020, std::max(options.iser.max_ahs, offer.target_max_ahs_length));  // 255 words
  std::unique_ptr<Portal> p(new Portal(loop, target, std::move(options)));
  if (p->options_.transport != PortalTransport::kTcp) {
    if (absl::Status s = p->InitIser(); !s.ok()) return s;
  }
  auto l = transport::TcpListener::Create(
      loop, address, [raw = p.get()](UniqueFd fd, std::string peer, std::string local) {
        raw->OnAccept(std::move(fd), std::move(peer), std::move(local));
      });
  if (!l.ok()) return l.status();
  p->listener_ = std::move(*l);
  return p;
}

absl::Status Portal::InitIser() {
  ctx_ = std::make_shared<IserDeviceContext>();
  std::unique_ptr<softiwarp::SoftDevice> dev = softiwarp::OpenDevice(loop_, options_.softiwarp);
  softiwarp::SoftDevice* soft = dev.get();
  ctx_->device = std::move(dev);
  auto ch = softiwarp::CreateEventChannel(soft);
  if (!ch.ok()) return ch.status();
  ctx_->channel = std::move(*ch);
  auto pd = ctx_->device->AllocPd();
  if (!pd.ok()) return pd.status();
  ctx_->pd = std::move(*pd);
  ctx_->pool = std::make_unique<RegisteredBufferPool>(ctx_->pd.get(), 0);
  auto id = ctx_->channel->CreateId(nullptr);
  if (!id.ok()) return id.status();
  cm_listener_ = std::move(*id);
  if (absl::Status s =
          static_cast<softiwarp::SoftCmId*>(cm_listener_.get())->ListenOnAdoptedSockets();
      !s.ok())
    return s;
  absl::Status s = loop_->AddFd(ctx_->channel->fd(), EPOLLIN, [this](uint32_t) { OnCmEvents(); });
  if (!s.ok()) return s;
  cm_fd_registered_ = true;
  return absl::OkStatus();
}

Portal::~Portal() {
  Close();
  pending_.clear();
  cm_listener_.reset();
  if (cm_fd_registered_) loop_->RemoveFd(ctx_->channel->fd());
}

uint16_t Portal::port() const {
  const std::string& a = listener_->address();
  return static_cast<uint16_t>(std::stoi(a.substr(a.rfind(':') + 1)));
}

void Portal::Close() {
  if (listener_) listener_->Close();
  for (auto& [fd, sniff] : sniffing_) {
    loop_->RemoveFd(fd);
    if (sniff.timer != 0) loop_->CancelTimer(sniff.timer);
  }
  sniffing_.clear();
}

void Portal::OnAccept(UniqueFd fd, std::string peer, std::string local) {
  // Even a TCP-only portal looks first, so an MPA Request is refused at once rather than
  // left waiting for a BHS that never comes.
  int raw = fd.get();
  absl::Status s = loop_->AddFd(raw, EPOLLIN, [this, raw](uint32_t) { OnSniffReadable(raw); });
  if (!s.ok()) return;
  Sniff& sn = sniffing_[raw];
  sn.fd = std::move(fd);
  sn.peer = std::move(peer);
  sn.local = std::move(local);
  sn.timer = loop_->RunAfter(options_.sniff_timeout, [this, raw] {
    auto it = sniffing_.find(raw);
    if (it == sniffing_.end()) return;
    it->second.timer = 0;
    ISER_LOG(kInfo, "portal %s: %s sent nothing; closed", address(), it->second.peer);
    DropSniff(raw);
  });
}

void Portal::DropSniff(int fd) {
  auto it = sniffing_.find(fd);
  if (it == sniffing_.end()) return;
  loop_->RemoveFd(fd);
  if (it->second.timer != 0) loop_->CancelTimer(it->second.timer);
  sniffing_.erase(it);
}

void Portal::OnSniffReadable(int fd) {
  auto it = sniffing_.find(fd);
  if (it == sniffing_.end()) return;
  uint8_t first = 0;
  ssize_t n = ::recv(fd, &first, 1, MSG_PEEK | MSG_DONTWAIT);
  if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
  if (n <= 0) {
    DropSniff(fd);
    return;
  }
  Sniff sn = std::move(it->second);
  loop_->RemoveFd(fd);
  if (sn.timer != 0) loop_->CancelTimer(sn.timer);
  sniffing_.erase(it);
  bool mpa = first == 'M';  // "MPA ID Req Frame"; opcode 0x0d is no Login PDU
  bool wanted = mpa ? options_.transport != PortalTransport::kTcp
                    : options_.transport != PortalTransport::kIser;
  if (!wanted) {
    ISER_LOG(kWarning, "portal %s (%s only): refusing %s connection from %s", address(),
             PortalTransportName(options_.transport), mpa ? "iSER" : "iSCSI/TCP", sn.peer);
    return;  // sn.fd closes
  }
  if (!mpa) {
    ++tcp_accepted_;
    target_->AddConnection(std::make_unique<transport::TcpConnection>(
        loop_, std::move(sn.fd), std::move(sn.peer), std::move(sn.local)));
    return;
  }
  absl::Status s =
      static_cast<softiwarp::SoftCmId*>(cm_listener_.get())->AdoptAcceptedSocket(std::move(sn.fd));
  if (!s.ok())
    ISER_LOG(kWarning, "portal %s: iSER connection from %s: %s", address(), sn.peer,
             std::string(s.message()));
}

void Portal::OnCmEvents() {
  for (;;) {
    auto ev = ctx_->channel->GetEvent();
    if (!ev.ok()) return;
    rdma::CmEvent& e = *ev;
    switch (e.type) {
      case rdma::CmEventType::kConnectRequest:
        OnConnectRequest(e);
        break;
      case rdma::CmEventType::kEstablished: {
        auto it = pending_.find(e.id);
        if (it == pending_.end()) break;
        std::unique_ptr<IserTargetConnection> conn = std::move(it->second);
        pending_.erase(it);
        ++iser_accepted_;
        target_->AddConnection(std::move(conn));
        break;
      }
      default: {
        // Disconnected or failed: before establishment the portal owns the connection;
        // after, the id's context is the live connection (a destroyed one's events are
        // dropped with its id).
        auto it = pending_.find(e.id);
        if (it != pending_.end()) {
          pending_.erase(it);
          break;
        }
        if (e.id != nullptr && e.id != cm_listener_.get() && e.id->context() != nullptr)
          static_cast<IserTargetConnection*>(e.id->context())->OnCmDisconnected();
        break;
      }
    }
  }
}

void Portal::OnConnectRequest(rdma::CmEvent& e) {
  std::unique_ptr<rdma::CmId> id = std::move(e.new_id);
  if (!id) return;
  auto* soft = static_cast<softiwarp::SoftCmId*>(id.get());
  std::string peer = soft->peer_address();
  std::string local = soft->local_address();
  // iSER CM header (RFC 7145 has none for iWARP; Linux sends struct iser_cm_hdr).
  uint8_t peer_flags = e.param.private_data.empty() ? 0 : e.param.private_data[0];
  bool send_inv = options_.send_with_invalidate && !(peer_flags & kIserCmSendWithInvNotSupported);
  IserConnectionOptions co = options_.iser;
  co.write_base_is_first_solicited_byte |= options_.linux_write_base;
  // Our ORD may not exceed the initiator's IRD (RFC 6581 sec 8).
  co.ord = std::min<uint8_t>(co.ord, e.param.responder_resources);
  rdma::CmId* key = id.get();
  auto conn = IserTargetConnection::Create(loop_, ctx_, std::move(id), co, send_inv, peer, local);
  if (!conn.ok()) {
    ISER_LOG(kWarning, "portal %s: iSER connection from %s: %s", address(), peer,
             std::string(conn.status().message()));
    return;  // the id (with its half-open socket) went with the failed Create
  }
  rdma::ConnParam param;
  param.private_data = {static_cast<uint8_t>(kIserCmZbvaNotSupported |
                                             (send_inv ? 0 : kIserCmSendWithInvNotSupported)),
                        0, 0, 0};
  param.initiator_depth = co.ord;
  param.responder_resources = co.ird;
  if (absl::Status s = (*conn)->cm_id()->Accept(param); !s.ok()) {
    ISER_LOG(kWarning, "portal %s: accept %s: %s", address(), peer, std::string(s.message()));
    return;
  }
  pending_.emplace(key, std::move(*conn));
}

}  // namespace iser::iser_transport
