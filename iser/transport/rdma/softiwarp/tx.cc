#include "iser/transport/rdma/softiwarp/tx.h"

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "iser/transport/rdma/softiwarp/crc32c.h"

namespace iser::softiwarp {
namespace {
constexpr size_t kMaxIov = 256;
}  // namespace

void FpduWriter::Prepare(std::span<const uint8_t> hdr, std::span<const iovec> payload, bool crc) {
  Slot& slot = slots_[slots_used_++];
  size_t payload_len = 0;
  for (const iovec& v : payload) payload_len += v.iov_len;
  std::memcpy(slot.hdr, hdr.data(), hdr.size());
  uint32_t ulpdu = static_cast<uint32_t>(hdr.size() - kMpaLengthSize + payload_len);
  slot.hdr[0] = static_cast<uint8_t>(ulpdu >> 8);
  slot.hdr[1] = static_cast<uint8_t>(ulpdu);
  uint32_t pad = FpduPadLength(ulpdu);
  std::memset(slot.trailer, 0, sizeof(slot.trailer));
  uint32_t value = 0;
  if (crc) {
    Crc32c c;
    c.Update(slot.hdr, hdr.size());
    for (const iovec& v : payload) c.Update(v.iov_base, v.iov_len);
    c.Update(slot.trailer, pad);
    value = c.Value();
  }
  StoreCrcWire(value, slot.trailer + pad);
  if (!busy_) {
    iov_.clear();
    index_ = 0;
  }
  iov_.push_back({slot.hdr, hdr.size()});
  for (const iovec& v : payload)
    if (v.iov_len > 0) iov_.push_back(v);
  iov_.push_back({slot.trailer, pad + kMpaCrcSize});
  batch_bytes_ += payload_len;
  busy_ = true;
}

FpduWriter::Result FpduWriter::Flush(ByteSink& sink) {
  while (busy_) {
    size_t n = std::min(kMaxIov, iov_.size() - index_);
    ssize_t w = sink.Writev(&iov_[index_], static_cast<int>(n));
    if (w == -EAGAIN) return Result::kWouldBlock;
    if (w < 0) {
      error_ = static_cast<int>(-w);
      return Result::kError;
    }
    partial_ = true;
    size_t left = static_cast<size_t>(w);
    while (left > 0) {
      iovec& v = iov_[index_];
      size_t take = std::min(left, v.iov_len);
      v.iov_base = static_cast<uint8_t*>(v.iov_base) + take;
      v.iov_len -= take;
      left -= take;
      if (v.iov_len == 0) ++index_;
    }
    while (index_ < iov_.size() && iov_[index_].iov_len == 0) ++index_;
    if (index_ == iov_.size()) {
      busy_ = false;
      partial_ = false;
      slots_used_ = 0;
      batch_bytes_ = 0;
    }
  }
  return Result::kDone;
}

void SliceIov(std::span<const iovec> src, uint64_t offset, uint64_t len, std::vector<iovec>* out) {
  for (const iovec& v : src) {
    if (len == 0) break;
    if (offset >= v.iov_len) {
      offset -= v.iov_len;
      continue;
    }
    uint64_t take = std::min<uint64_t>(len, v.iov_len - offset);
    out->push_back({static_cast<uint8_t*>(v.iov_base) + offset, static_cast<size_t>(take)});
    len -= take;
    offset = 0;
  }
}

}  // namespace iser::softiwarp
