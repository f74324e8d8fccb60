#include "iser/transport/rdma/softiwarp/byte_io.h"

#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace iser::softiwarp {

ssize_t FdByteIo::Readv(const iovec* iov, int iovcnt) {
  for (;;) {
    ssize_t n = ::readv(fd_, iov, iovcnt);
    if (n >= 0) return n;
    if (errno == EINTR) continue;
    return errno == EWOULDBLOCK ? -EAGAIN : -errno;
  }
}

ssize_t FdByteIo::Writev(const iovec* iov, int iovcnt) {
  msghdr msg{};
  msg.msg_iov = const_cast<iovec*>(iov);
  msg.msg_iovlen = static_cast<size_t>(iovcnt);
  for (;;) {
    ssize_t n = ::sendmsg(fd_, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n >= 0) return n;
    if (errno == EINTR) continue;
    return errno == EWOULDBLOCK ? -EAGAIN : -errno;
  }
}

ssize_t MemoryByteSource::Readv(const iovec* iov, int iovcnt) {
  if (pos_ >= data_.size()) return eof_ ? 0 : -EAGAIN;
  size_t budget = std::min(chunk_, data_.size() - pos_);
  size_t done = 0;
  for (int i = 0; i < iovcnt && budget > 0; ++i) {
    size_t n = std::min(budget, iov[i].iov_len);
    std::memcpy(iov[i].iov_base, data_.data() + pos_, n);
    pos_ += n;
    done += n;
    budget -= n;
  }
  return static_cast<ssize_t>(done);
}

ssize_t MemoryByteSink::Writev(const iovec* iov, int iovcnt) {
  size_t budget = limit_;
  size_t done = 0;
  for (int i = 0; i < iovcnt && budget > 0; ++i) {
    size_t n = std::min(budget, iov[i].iov_len);
    const auto* p = static_cast<const uint8_t*>(iov[i].iov_base);
    data_.insert(data_.end(), p, p + n);
    done += n;
    budget -= n;
  }
  return done == 0 && limit_ == 0 ? -EAGAIN : static_cast<ssize_t>(done);
}

}  // namespace iser::softiwarp
