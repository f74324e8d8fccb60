#include "iser/transport/tcp/tcp_listener.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "iser/base/logging.h"

namespace iser::transport {

absl::StatusOr<SocketAddress> SocketAddress::Parse(absl::string_view text) {
  absl::string_view host, port;
  if (!text.empty() && text.front() == '[') {
    size_t close = text.find(']');
    if (close == absl::string_view::npos || close + 1 >= text.size() || text[close + 1] != ':')
      return absl::InvalidArgumentError(absl::StrCat("bad address '", text, "': want [v6]:port"));
    host = text.substr(1, close - 1);
    port = text.substr(close + 2);
  } else {
    size_t colon = text.rfind(':');
    if (colon == absl::string_view::npos)
      return absl::InvalidArgumentError(absl::StrCat("bad address '", text, "': want host:port"));
    host = text.substr(0, colon);
    port = text.substr(colon + 1);
  }
  uint32_t port_num;
  if (!absl::SimpleAtoi(port, &port_num) || port_num > 65535)
    return absl::InvalidArgumentError(absl::StrCat("bad port in '", text, "'"));
  SocketAddress a;
  std::string host_str(host.empty() ? "0.0.0.0" : host);
  auto* v4 = reinterpret_cast<sockaddr_in*>(&a.storage);
  auto* v6 = reinterpret_cast<sockaddr_in6*>(&a.storage);
  if (inet_pton(AF_INET, host_str.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(static_cast<uint16_t>(port_num));
    a.length = sizeof(sockaddr_in);
  } else if (inet_pton(AF_INET6, host_str.c_str(), &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(static_cast<uint16_t>(port_num));
    a.length = sizeof(sockaddr_in6);
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("bad address '", text, "': host must be a numeric IPv4 or IPv6 address"));
  }
  return a;
}

std::string SocketAddress::ToString() const {
  char buf[INET6_ADDRSTRLEN] = {0};
  if (storage.ss_family == AF_INET) {
    auto* v4 = reinterpret_cast<const sockaddr_in*>(&storage);
    inet_ntop(AF_INET, &v4->sin_addr, buf, sizeof(buf));
    return absl::StrFormat("%s:%d", buf, ntohs(v4->sin_port));
  }
  if (storage.ss_family == AF_INET6) {
    auto* v6 = reinterpret_cast<const sockaddr_in6*>(&storage);
    inet_ntop(AF_INET6, &v6->sin6_addr, buf, sizeof(buf));
    return absl::StrFormat("[%s]:%d", buf, ntohs(v6->sin6_port));
  }
  return "?";
}

SocketAddress SocketAddress::FromFd(int fd, bool peer) {
  SocketAddress a;
  a.length = sizeof(a.storage);
  if (peer) {
    getpeername(fd, reinterpret_cast<sockaddr*>(&a.storage), &a.length);
  } else {
    getsockname(fd, reinterpret_cast<sockaddr*>(&a.storage), &a.length);
  }
  return a;
}

absl::StatusOr<std::unique_ptr<TcpListener>> TcpListener::Create(EventLoop* loop,
                                                                 absl::string_view address,
                                                                 AcceptCallback on_accept) {
  auto addr = SocketAddress::Parse(address);
  if (!addr.ok()) return addr.status();
  UniqueFd fd(::socket(addr->storage.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!fd) return absl::InternalError(absl::StrCat("socket: ", std::strerror(errno)));
  int one = 1;
  setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (::bind(fd.get(), reinterpret_cast<const sockaddr*>(&addr->storage), addr->length) != 0) {
    int err = errno;
    auto msg = absl::StrCat("cannot listen on ", address, ": ", std::strerror(err));
    return err == EADDRINUSE ? absl::AlreadyExistsError(msg) : absl::UnavailableError(msg);
  }
  if (::listen(fd.get(), 128) != 0)
    return absl::UnavailableError(absl::StrCat("listen: ", std::strerror(errno)));
  auto listener =
      std::unique_ptr<TcpListener>(new TcpListener(loop, std::move(fd), std::move(on_accept)));
  listener->address_ = SocketAddress::FromFd(listener->fd_.get(), false).ToString();
  absl::Status s = loop->AddFd(listener->fd_.get(), EPOLLIN,
                               [l = listener.get()](uint32_t) { l->OnReadable(); });
  if (!s.ok()) return s;
  return listener;
}

TcpListener::TcpListener(EventLoop* loop, UniqueFd fd, AcceptCallback cb)
    : loop_(loop), fd_(std::move(fd)), on_accept_(std::move(cb)) {}

TcpListener::~TcpListener() { Close(); }

void TcpListener::Close() {
  if (!fd_) return;
  loop_->RemoveFd(fd_.get());
  fd_.Reset();
}

void TcpListener::OnReadable() {
  for (int i = 0; i < 64 && fd_; ++i) {
    UniqueFd conn(::accept4(fd_.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC));
    if (!conn) {
      if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return;
      // EMFILE and friends: log and let the next wakeup retry.
      ISER_LOG(kWarning, "accept on %s: %s", address_, std::strerror(errno));
      return;
    }
    int one = 1;
    setsockopt(conn.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    std::string peer = SocketAddress::FromFd(conn.get(), true).ToString();
    std::string local = SocketAddress::FromFd(conn.get(), false).ToString();
    on_accept_(std::move(conn), std::move(peer), std::move(local));
  }
}

}  // namespace iser::transport
