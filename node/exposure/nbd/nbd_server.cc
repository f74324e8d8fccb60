#include "node/exposure/nbd/nbd_server.h"

#include <endian.h>
#include <linux/nbd.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "iser/base/logging.h"
#include "node/exposure/exposure.h"

namespace iser::node {
namespace {

constexpr size_t kRequestSize = 28;
constexpr size_t kReplySize = 16;
constexpr uint32_t kMaxRequest = 32u << 20;
static_assert(sizeof(nbd_request) == kRequestSize);
static_assert(sizeof(nbd_reply) == kReplySize);

bool ReadFull(int fd, void* buf, size_t len) {
  auto* p = static_cast<uint8_t*>(buf);
  while (len > 0) {
    ssize_t n = ::read(fd, p, len);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    p += n;
    len -= static_cast<size_t>(n);
  }
  return true;
}

}  // namespace

NbdServer::NbdServer(BlockBackend& backend, UniqueFd socket, bool read_only)
    : backend_(backend), socket_(std::move(socket)), read_only_(read_only) {}

NbdServer::~NbdServer() { Stop(); }

void NbdServer::Start() {
  reader_ = std::thread([this] { ReaderLoop(); });
}

void NbdServer::Wait() {
  if (reader_.joinable()) reader_.join();
  while (in_flight_.load() > 0) ::usleep(1000);
}

void NbdServer::Stop() {
  if (socket_) ::shutdown(socket_.get(), SHUT_RDWR);
  Wait();
}

void NbdServer::Reply(const char handle[8], int error, const uint8_t* data, size_t len) {
  nbd_reply reply;
  reply.magic = htobe32(NBD_REPLY_MAGIC);
  reply.error = htobe32(static_cast<uint32_t>(error));
  std::memcpy(reply.handle, handle, 8);
  iovec iov[2] = {{&reply, kReplySize}, {const_cast<uint8_t*>(data), error == 0 ? len : 0}};
  std::lock_guard<std::mutex> lock(send_mu_);
  int cnt = iov[1].iov_len > 0 ? 2 : 1;
  iovec* v = iov;
  while (cnt > 0) {
    ssize_t n = ::writev(socket_.get(), v, cnt);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return;  // the client is gone; the reader notices too
    size_t left = static_cast<size_t>(n);
    while (cnt > 0 && left >= v->iov_len) {
      left -= v->iov_len;
      ++v;
      --cnt;
    }
    if (cnt > 0) {
      v->iov_base = static_cast<uint8_t*>(v->iov_base) + left;
      v->iov_len -= left;
    }
  }
}

void NbdServer::ReaderLoop() {
  const int fd = socket_.get();
  const uint64_t size = backend_.size_bytes();
  const uint32_t bs = backend_.block_size();
  for (;;) {
    nbd_request req;
    if (!ReadFull(fd, &req, kRequestSize)) return;
    if (be32toh(req.magic) != NBD_REQUEST_MAGIC) {
      ISER_LOG(kError, "nbd: bad request magic 0x%08x; closing", be32toh(req.magic));
      ::shutdown(fd, SHUT_RDWR);
      return;
    }
    requests_.fetch_add(1, std::memory_order_relaxed);
    const uint32_t type = be32toh(req.type) & 0xffff;
    const uint64_t from = be64toh(req.from);
    const uint32_t len = be32toh(req.len);
    char handle[8];
    std::memcpy(handle, req.handle, 8);
    const bool in_range = from <= size && len <= size - from;
    const bool aligned = from % bs == 0 && len % bs == 0;

    if (type == NBD_CMD_DISC) return;
    if (type == NBD_CMD_WRITE) {
      if (len > kMaxRequest) {
        ::shutdown(fd, SHUT_RDWR);  // cannot skip the payload safely
        return;
      }
      auto* buf = static_cast<uint8_t*>(std::malloc(len ? len : 1));
      if (!ReadFull(fd, buf, len)) {
        std::free(buf);
        return;
      }
      if (read_only_ || !in_range || !aligned) {
        Reply(handle, read_only_ ? EPERM : (in_range ? EINVAL : ENOSPC), nullptr, 0);
        std::free(buf);
        continue;
      }
      in_flight_.fetch_add(1);
      backend_.Write(from, std::span<const uint8_t>(buf, len),
                     [this, buf, h = std::string(handle, 8)](absl::Status s) {
                       Reply(h.data(), StatusToErrno(s), nullptr, 0);
                       std::free(buf);
                       in_flight_.fetch_sub(1);
                     });
      continue;
    }
    if (type == NBD_CMD_READ) {
      if (!in_range || !aligned || len > kMaxRequest) {
        Reply(handle, EINVAL, nullptr, 0);
        continue;
      }
      auto* buf = static_cast<uint8_t*>(std::malloc(len ? len : 1));
      in_flight_.fetch_add(1);
      backend_.Read(from, std::span<uint8_t>(buf, len),
                    [this, buf, len, h = std::string(handle, 8)](absl::Status s) {
                      Reply(h.data(), StatusToErrno(s), buf, len);
                      std::free(buf);
                      in_flight_.fetch_sub(1);
                    });
      continue;
    }
    if (type == NBD_CMD_FLUSH) {
      in_flight_.fetch_add(1);
      backend_.Flush([this, h = std::string(handle, 8)](absl::Status s) {
        Reply(h.data(), StatusToErrno(s), nullptr, 0);
        in_flight_.fetch_sub(1);
      });
      continue;
    }
    if (type == NBD_CMD_TRIM) {
      if (read_only_ || !in_range || !aligned) {
        Reply(handle, read_only_ ? EPERM : EINVAL, nullptr, 0);
        continue;
      }
      in_flight_.fetch_add(1);
      backend_.Discard(from, len, [this, h = std::string(handle, 8)](absl::Status s) {
        Reply(h.data(), StatusToErrno(s), nullptr, 0);
        in_flight_.fetch_sub(1);
      });
      continue;
    }
    Reply(handle, EINVAL, nullptr, 0);  // unknown command (we never offered it)
  }
}

}  // namespace iser::node
