#include "iser/transport/tcp/pdu_stream.h"

#include <sys/socket.h>
#include <sys/uio.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include <limits>

#include "absl/strings/str_cat.h"
#include "iser/pdu/digest.h"

namespace iser::transport {
namespace {
// A data-segment remainder at least this large is received in place, not via staging.
constexpr size_t kDirectThreshold = 16 << 10;
// After a large data segment went in place, the next one is likely large too: read its
// header through a small staging window so little of its data is copied via staging.
constexpr size_t kHeaderWindow = 4 << 10;
// Login PDUs are limited to 8192 bytes of data (RFC 7143 sec 13.12); be lenient.
constexpr uint32_t kLoginMaxSegment = 64 << 10;
constexpr int kMaxIov = 256;
}  // namespace

PduStream::PduStream(EventLoop* loop, UniqueFd fd, std::vector<uint8_t> preread,
                     size_t staging_bytes)
    : loop_(loop), fd_(std::move(fd)) {
  staging_.resize(std::max(staging_bytes, preread.size()));
  if (!preread.empty()) std::memcpy(staging_.data(), preread.data(), preread.size());
  staging_end_ = preread.size();
  reader_.set_max_data_segment(kLoginMaxSegment);
}

PduStream::~PduStream() {
  if (watching_) loop_->RemoveFd(fd_.get());
}

absl::Status PduStream::Start(Callbacks callbacks) {
  callbacks_ = std::move(callbacks);
  reader_.set_placement([this](const pdu::Bhs& bhs, std::span<const uint8_t>) {
    return callbacks_.place_data ? callbacks_.place_data(bhs) : std::span<uint8_t>();
  });
  if (callbacks_.check_header) reader_.set_header_check(callbacks_.check_header);
  absl::Status s =
      loop_->AddFd(fd_.get(), EPOLLIN | EPOLLRDHUP, [this](uint32_t ev) { OnEvents(ev); });
  if (!s.ok()) return s;
  watching_ = true;
  if (staging_end_ > 0) {
    std::weak_ptr<int> alive = life_;
    loop_->Defer([this, alive] {
      if (alive.lock() && !closed_) FeedStaging();
    });
  }
  return absl::OkStatus();
}

void PduStream::SetDigests(bool header, bool data) {
  header_digest_ = header;
  data_digest_ = data;
  reader_.set_header_digest(header);
  reader_.set_data_digest(data);
}

void PduStream::OnEvents(uint32_t events) {
  if (closed_) return;
  if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) HandleReadable();
  if (closed_) return;
  if (events & EPOLLOUT) Flush();
}

void PduStream::HandleReadable() {
  // Bounded work per wakeup so one busy connection can't starve the loop.
  for (int round = 0; round < 32 && !closed_; ++round) {
    std::span<uint8_t> direct = reader_.DirectSpan();
    if (staging_begin_ == staging_end_ && direct.size() >= kDirectThreshold) {
      ssize_t n = ::recv(fd_.get(), direct.data(), direct.size(), 0);
      if (n > 0) {
        bytes_received_ += n;
        bool complete = false;
        absl::Status s = reader_.DirectAdvance(static_cast<size_t>(n), &complete);
        if (!s.ok()) return Close(s);
        if (complete) Deliver();
        if (static_cast<size_t>(n) < direct.size()) return;  // drained; see below
        continue;
      }
      if (n == 0) return Close(absl::OkStatus());
      if (errno == EAGAIN || errno == EWOULDBLOCK) return;
      if (errno == EINTR) continue;
      return Close(absl::UnavailableError(absl::StrCat("recv: ", std::strerror(errno))));
    }
    if (staging_begin_ == staging_end_) staging_begin_ = staging_end_ = 0;
    size_t room = std::min(staging_.size() - staging_end_, staging_read_cap_);
    ssize_t n = ::recv(fd_.get(), staging_.data() + staging_end_, room, 0);
    if (n > 0) {
      bytes_received_ += n;
      staging_end_ += static_cast<size_t>(n);
      if (!FeedStaging()) return;
      // A short read drained the socket: skip the recv that would only say EAGAIN
      // (epoll is level-triggered and wakes us for anything that arrives later).
      if (static_cast<size_t>(n) < room) return;
      continue;
    }
    if (n == 0) return Close(absl::OkStatus());
    if (errno == EAGAIN || errno == EWOULDBLOCK) return;
    if (errno == EINTR) continue;
    return Close(absl::UnavailableError(absl::StrCat("recv: ", std::strerror(errno))));
  }
}

bool PduStream::FeedStaging() {
  while (staging_begin_ < staging_end_ && !closed_) {
    bool complete = false;
    auto used =
        reader_.Feed({staging_.data() + staging_begin_, staging_end_ - staging_begin_}, &complete);
    if (!used.ok()) {
      Close(used.status());
      return false;
    }
    staging_begin_ += *used;
    if (complete) Deliver();
  }
  if (staging_begin_ == staging_end_) staging_begin_ = staging_end_ = 0;
  return !closed_;
}

void PduStream::Deliver() {
  pdu::ReceivedPdu pdu = reader_.TakePdu();
  staging_read_cap_ = pdu.placed && pdu.data.size() >= kDirectThreshold
                          ? kHeaderWindow
                          : std::numeric_limits<size_t>::max();
  if (callbacks_.on_pdu) callbacks_.on_pdu(std::move(pdu));
}

void PduStream::Send(pdu::OutgoingPdu pdu) {
  if (closed_) return;
  Wire w;
  w.pdu = std::move(pdu);
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

void PduStream::ScheduleFlush() {
  if (flush_scheduled_ || want_writable_) return;
  flush_scheduled_ = true;
  std::weak_ptr<int> alive = life_;
  loop_->Defer([this, alive] {
    if (!alive.lock()) return;
    flush_scheduled_ = false;
    if (!closed_) Flush();
  });
}

void PduStream::Flush() {
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
    // sendmsg rather than writev: MSG_NOSIGNAL keeps a vanished peer from raising SIGPIPE
    // in a process that has not ignored it (library users, tests).
    msghdr msg{};
    msg.msg_iov = iov;
    msg.msg_iovlen = static_cast<size_t>(n_iov);
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
      return Close(absl::UnavailableError(absl::StrCat("sendmsg: ", std::strerror(errno))));
    }
    bytes_sent_ += static_cast<uint64_t>(n);
    size_t done = front_sent_ + static_cast<size_t>(n);
    while (!send_queue_.empty() && done >= send_queue_.front().total) {
      done -= send_queue_.front().total;
      send_queue_.pop_front();
    }
    front_sent_ = done;
  }
  if (send_queue_.empty()) {
    if (want_writable_) {
      want_writable_ = false;
      (void)loop_->ModifyFd(fd_.get(), EPOLLIN | EPOLLRDHUP);
    }
    if (close_after_flush_) Close(absl::OkStatus());
  }
}

void PduStream::CloseAfterFlush() {
  if (closed_) return;
  close_after_flush_ = true;
  ScheduleFlush();
}

void PduStream::Close(const absl::Status& why) {
  if (closed_) return;
  closed_ = true;
  if (watching_) {
    loop_->RemoveFd(fd_.get());
    watching_ = false;
  }
  ::shutdown(fd_.get(), SHUT_RDWR);
  fd_.Reset();
  send_queue_.clear();
  if (callbacks_.on_closed) callbacks_.on_closed(why);
}

}  // namespace iser::transport
