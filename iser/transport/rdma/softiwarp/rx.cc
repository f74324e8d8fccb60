#include "iser/transport/rdma/softiwarp/rx.h"

#include <algorithm>
#include <cerrno>

namespace iser::softiwarp {
namespace {
constexpr int kMaxIov = 64;
// Read-ahead policy (see StagedFdSource). While FPDUs carry a few KiB, reading 64 KiB
// ahead turns one syscall per FPDU into one per ~15, at the price of copying each small
// payload once from the staging buffer (cheaper than the syscall it saves). While they
// carry tens of KiB, a 4 KiB read-ahead still brings the trailer and the next header
// with the payload, and the payload itself is read straight into its destination.
constexpr uint32_t kSmallFpduPayload = 8 << 10;
constexpr size_t kSmallFpduReadAhead = 64 << 10;
constexpr size_t kLargeFpduReadAhead = 4 << 10;
}  // namespace

std::optional<RxMachine::Outcome> RxMachine::Read(ByteSource& src, iovec* iov, int n, size_t* got) {
  ssize_t r = src.Readv(iov, n);
  if (r > 0) {
    *got = static_cast<size_t>(r);
    return std::nullopt;
  }
  *got = 0;
  if (r == 0) {
    state_ = State::kDone;
    return Outcome::kEof;
  }
  if (r == -EAGAIN) return Outcome::kWouldBlock;
  io_errno_ = static_cast<int>(-r);
  state_ = State::kDone;
  return Outcome::kIoError;
}

RxMachine::Outcome RxMachine::Fail(const TermError& e) {
  error_ = e;
  state_ = State::kDone;
  return Outcome::kProtocolError;
}

void RxMachine::ResetSegment() {
  hdr_have_ = 0;
  hdr_need_ = kMinIwarpHdr;
  prefix_checked_ = false;
  dst_.clear();
  dst_index_ = dst_offset_ = payload_have_ = 0;
  trailer_have_ = 0;
  state_ = State::kHdr;
}

bool RxMachine::HeaderPrefixComplete() {
  uint8_t ddp = hdr_[2], rdmap = hdr_[3];
  bool tagged = ddp & kDdpFlagTagged;
  if ((ddp & kDdpVersionMask) != kDdpVersion) {
    error_ = tagged ? MakeTermError(TermLayer::kDdp, kDdpEtypeTagged, kDdpEcodeTVersion)
                    : MakeTermError(TermLayer::kDdp, kDdpEtypeUntagged, kDdpEcodeUtVersion);
    return false;
  }
  if ((rdmap & kRdmapVersionMask) >> 6 != kRdmapVersion) {
    error_ = MakeTermError(TermLayer::kRdmap, kRdmapEtypeRemoteOperation, kRdmapEcodeVersion);
    return false;
  }
  uint8_t opcode = rdmap & kRdmapOpcodeMask;
  if (opcode >= kNumRdmapOpcodes || kOpTable[opcode].tagged != tagged) {
    error_ = MakeTermError(TermLayer::kRdmap, kRdmapEtypeRemoteOperation, kRdmapEcodeOpcode);
    return false;
  }
  op_ = static_cast<RdmapOpcode>(opcode);
  const OpInfo& info = kOpTable[opcode];
  uint32_t ulpdu = uint32_t{hdr_[0]} << 8 | hdr_[1];
  if (ulpdu + kMpaLengthSize < info.hdr_len) {
    // Too short to hold its own header: the layout is unknown, include nothing.
    error_ = TermError{TermLayer::kRdmap, kRdmapEtypeRemoteOperation, kRdmapEcodeUnspecified, false,
                       false};
    return false;
  }
  hdr_need_ = info.hdr_len;
  payload_len_ = ulpdu + kMpaLengthSize - info.hdr_len;
  pad_ = FpduPadLength(ulpdu);
  prefix_checked_ = true;
  return true;
}

void RxMachine::UpdateReadAhead(ByteSource& src) {
  // Weight 1/8: a 128 KiB transfer (two 64 KiB FPDUs, a short tail, a small Send) stays
  // "large"; a stream of 4 KiB Sends and RDMA Writes stays "small".
  // payload_len_ < 64 KiB (16-bit ULPDU_Length), so this cannot overflow.
  mean_payload_ = (mean_payload_ * 7 + payload_len_) / 8;
  bool small = mean_payload_ < kSmallFpduPayload;
  if (small == small_fpdus_) return;
  small_fpdus_ = small;
  src.SetReadAhead(small ? kSmallFpduReadAhead : kLargeFpduReadAhead);
}

void RxMachine::CrcOverIov(size_t n) {
  size_t i = dst_index_, off = dst_offset_;
  while (n > 0) {
    size_t take = std::min(n, dst_[i].iov_len - off);
    if (crc_enabled_) crc_.Update(static_cast<uint8_t*>(dst_[i].iov_base) + off, take);
    n -= take;
    off += take;
    if (off == dst_[i].iov_len) {
      ++i;
      off = 0;
    }
  }
  dst_index_ = i;
  dst_offset_ = off;
}

RxMachine::Outcome RxMachine::Pump(ByteSource& src) {
  for (;;) {
    if (stop_) {
      state_ = State::kDone;
      return Outcome::kStopped;
    }
    switch (state_) {
      case State::kDone:
        return Outcome::kStopped;

      case State::kHdr: {
        if (hdr_have_ < hdr_need_) {
          iovec iov{hdr_ + hdr_have_, hdr_need_ - hdr_have_};
          size_t got;
          if (auto o = Read(src, &iov, 1, &got)) return *o;
          hdr_have_ += got;
          if (hdr_have_ < hdr_need_) continue;
        }
        if (!prefix_checked_) {
          if (!HeaderPrefixComplete()) return Fail(error_);
          UpdateReadAhead(src);
          if (hdr_have_ < hdr_need_) continue;  // rest of a longer header
        }
        RxSegment seg{op_, {hdr_, hdr_need_}, payload_len_, (hdr_[2] & kDdpFlagLast) != 0};
        dst_.clear();
        if (auto e = handler_->OnSegmentHeader(seg, &dst_)) return Fail(*e);
        size_t total = 0;
        for (const iovec& v : dst_) total += v.iov_len;
        if (total != payload_len_) {
          return Fail(MakeTermError(TermLayer::kDdp, kDdpEtypeCatastrophic, 0));
        }
        // Drop empty iovecs so progress tracking never stalls on them.
        std::erase_if(dst_, [](const iovec& v) { return v.iov_len == 0; });
        if (crc_enabled_) {
          crc_.Reset();
          crc_.Update(hdr_, hdr_need_);
        }
        state_ = State::kData;
        break;
      }

      case State::kData: {
        if (payload_have_ < payload_len_) {
          iovec iov[kMaxIov];
          int n = 0;
          size_t i = dst_index_, off = dst_offset_;
          while (i < dst_.size() && n < kMaxIov) {
            iov[n].iov_base = static_cast<uint8_t*>(dst_[i].iov_base) + off;
            iov[n].iov_len = dst_[i].iov_len - off;
            ++n;
            ++i;
            off = 0;
          }
          size_t got;
          if (auto o = Read(src, iov, n, &got)) return *o;
          CrcOverIov(got);
          payload_have_ += got;
          if (payload_have_ < payload_len_) continue;
        }
        state_ = State::kTrailer;
        break;
      }

      case State::kTrailer: {
        size_t need = pad_ + kMpaCrcSize;
        if (trailer_have_ < need) {
          // Also read the next FPDU's fixed header prefix: it always belongs to the
          // next FPDU (which is at least kMinIwarpHdr + CRC bytes long).
          iovec iov[2] = {{trailer_ + trailer_have_, need - trailer_have_}, {next_, kMinIwarpHdr}};
          size_t got;
          if (auto o = Read(src, iov, 2, &got)) return *o;
          size_t t = std::min(got, need - trailer_have_);
          trailer_have_ += t;
          if (trailer_have_ < need) continue;
          size_t next_hdr = got - t;
          if (crc_enabled_) {
            crc_.Update(trailer_, pad_);
            uint32_t want = LoadCrcWire(trailer_ + pad_);
            if (want != crc_.Value()) {
              // Keep the offending header around for diagnostics; no headers included.
              return Fail(MakeTermError(TermLayer::kLlp, kLlpEtypeMpa, kLlpEcodeCrc));
            }
          }
          RxSegment seg{op_, {hdr_, hdr_need_}, payload_len_, (hdr_[2] & kDdpFlagLast) != 0};
          ++fpdus_;
          if (auto e = handler_->OnSegmentDone(seg)) return Fail(*e);
          ResetSegment();
          std::copy(next_, next_ + next_hdr, hdr_);  // header bytes, not payload
          hdr_have_ = next_hdr;
          break;
        }
        break;
      }
    }
  }
}

}  // namespace iser::softiwarp
