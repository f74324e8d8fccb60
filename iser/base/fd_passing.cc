#include "iser/base/fd_passing.h"

#include <sys/socket.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace iser {
namespace {
constexpr size_t kMaxPayload = 4096;
}  // namespace

absl::Status SendFds(int sock, absl::string_view payload, std::span<const int> fds) {
  if (payload.empty() || payload.size() > kMaxPayload)
    return absl::InvalidArgumentError("payload must be 1..4096 bytes");
  if (fds.size() > kMaxPassedFds)
    return absl::InvalidArgumentError(absl::StrCat("at most ", kMaxPassedFds, " descriptors"));
  iovec iov{const_cast<char*>(payload.data()), payload.size()};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * kMaxPassedFds)] = {};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  if (!fds.empty()) {
    msg.msg_control = control;
    msg.msg_controllen = CMSG_SPACE(sizeof(int) * fds.size());
    cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
    std::memcpy(CMSG_DATA(c), fds.data(), sizeof(int) * fds.size());
  }
  for (;;) {
    ssize_t n = ::sendmsg(sock, &msg, MSG_NOSIGNAL);
    if (n >= 0) {
      if (static_cast<size_t>(n) != payload.size())
        return absl::InternalError("short sendmsg of a descriptor message");
      return absl::OkStatus();
    }
    if (errno != EINTR) return absl::InternalError(absl::StrCat("sendmsg: ", strerror(errno)));
  }
}

absl::StatusOr<ReceivedFds> ReceiveFds(int sock) {
  ReceivedFds out;
  out.payload.resize(kMaxPayload);
  iovec iov{out.payload.data(), out.payload.size()};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * kMaxPassedFds)] = {};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof(control);
  ssize_t n;
  do {
    n = ::recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
  } while (n < 0 && errno == EINTR);
  if (n < 0) return absl::InternalError(absl::StrCat("recvmsg: ", strerror(errno)));
  // Take ownership of every descriptor first, so an error below closes them.
  for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (size_t i = 0; i < count; ++i) {
      int fd;
      std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
      out.fds.emplace_back(fd);
    }
  }
  if (n == 0) return absl::UnavailableError("peer closed the socket");
  if (msg.msg_flags & (MSG_CTRUNC | MSG_TRUNC))
    return absl::DataLossError("descriptor message truncated");
  out.payload.resize(static_cast<size_t>(n));
  return out;
}

}  // namespace iser
