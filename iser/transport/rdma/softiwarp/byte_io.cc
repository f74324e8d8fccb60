#include "iser/transport/rdma/softiwarp/byte_io.h"

#include <sys/socket.h>
#include <unistd.h>

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

size_t StagedFdSource::CopyOut(const iovec* iov, int iovcnt) {
  size_t done = 0;
  for (int i = 0; i < iovcnt && begin_ < end_; ++i) {
    size_t n = std::min(iov[i].iov_len, end_ - begin_);
    std::memcpy(iov[i].iov_base, buf_.data() + begin_, n);
    begin_ += n;
    done += n;
  }
  return done;
}

ssize_t StagedFdSource::Readv(const iovec* iov, int iovcnt) {
  if (begin_ < end_) return static_cast<ssize_t>(CopyOut(iov, iovcnt));
  begin_ = end_ = 0;
  if (drained_) {
    // The last read came back short: the socket was empty then. Our caller is woken by
    // level-triggered epoll, which reports anything that arrived since, so a read now
    // would almost always be an EAGAIN syscall.
    drained_ = false;
    return -EAGAIN;
  }
  size_t want = 0;
  for (int i = 0; i < iovcnt; ++i) want += iov[i].iov_len;
  constexpr int kMaxDirect = 63;
  if (want >= direct_threshold_ && iovcnt <= kMaxDirect) {
    iovec all[kMaxDirect + 1];
    std::copy(iov, iov + iovcnt, all);
    all[iovcnt] = {buf_.data(), read_ahead_};
    for (;;) {
      ++syscalls_;
      ssize_t n = ::readv(fd_, all, iovcnt + 1);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return errno == EWOULDBLOCK ? -EAGAIN : -errno;
      drained_ = n > 0 && static_cast<size_t>(n) < want + read_ahead_;
      if (static_cast<size_t>(n) <= want) return n;
      end_ = static_cast<size_t>(n) - want;  // the staging iovec got the rest
      staged_bytes_ += end_;
      return static_cast<ssize_t>(want);
    }
  }
  for (;;) {
    ++syscalls_;
    ssize_t n = ::read(fd_, buf_.data(), read_ahead_);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return errno == EWOULDBLOCK ? -EAGAIN : -errno;
    if (n == 0) return 0;
    drained_ = static_cast<size_t>(n) < read_ahead_;
    end_ = static_cast<size_t>(n);
    staged_bytes_ += end_;
    return static_cast<ssize_t>(CopyOut(iov, iovcnt));
  }
}

void StagedFdSource::SetReadAhead(size_t bytes) {
  // At least a header and a trailer, so the staged path always makes progress.
  read_ahead_ = std::clamp<size_t>(bytes, 64, buf_.size());
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
