// A listening TCP socket on an event loop: accepts non-blocking, TCP_NODELAY sockets.
#ifndef ISER_TRANSPORT_TCP_TCP_LISTENER_H_
#define ISER_TRANSPORT_TCP_TCP_LISTENER_H_

#include <sys/socket.h>

#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "iser/base/event_loop.h"
#include "iser/base/unique_fd.h"

namespace iser::transport {

// "host:port", "[v6]:port" or ":port" -> sockaddr. Port 0 picks a free port.
struct SocketAddress {
  sockaddr_storage storage{};
  socklen_t length = 0;
  std::string ToString() const;
  static absl::StatusOr<SocketAddress> Parse(absl::string_view text);
  static SocketAddress FromFd(int fd, bool peer);
};

class TcpListener {
 public:
  using AcceptCallback = std::function<void(UniqueFd fd, std::string peer, std::string local)>;

  static absl::StatusOr<std::unique_ptr<TcpListener>> Create(EventLoop* loop,
                                                             absl::string_view address,
                                                             AcceptCallback on_accept);
  ~TcpListener();
  // The bound address (with the real port when 0 was asked for).
  const std::string& address() const { return address_; }
  void Close();

 private:
  TcpListener(EventLoop* loop, UniqueFd fd, AcceptCallback cb);
  void OnReadable();

  EventLoop* loop_;
  UniqueFd fd_;
  AcceptCallback on_accept_;
  std::string address_;
};

}  // namespace iser::transport

#endif  // ISER_TRANSPORT_TCP_TCP_LISTENER_H_
