#include "iser/transport/rdma/softiwarp/mpa_handshake.h"

#include <algorithm>
#include <cerrno>

#include "absl/status/status.h"

namespace iser::softiwarp {

MpaFrameReader::Outcome MpaFrameReader::Pump(ByteSource& src) {
  for (;;) {
    if (have_ < buf_.size()) {
      iovec iov{buf_.data() + have_, buf_.size() - have_};
      ssize_t n = src.Readv(&iov, 1);
      if (n == -EAGAIN) return Outcome::kNeedMore;
      if (n == 0) return Outcome::kEof;
      if (n < 0) {
        error_ = absl::UnavailableError("read failed");
        return Outcome::kIoError;
      }
      have_ += static_cast<size_t>(n);
      if (have_ < buf_.size()) continue;
    }
    if (!header_done_) {
      auto pd_len = DecodeMpaHeader(
          std::span<const uint8_t, sizeof(MpaFrameHeader)>(buf_.data(), sizeof(MpaFrameHeader)),
          expect_reply_);
      if (!pd_len.ok()) {
        error_ = pd_len.status();
        return Outcome::kBadFrame;
      }
      header_done_ = true;
      buf_.resize(sizeof(MpaFrameHeader) + *pd_len);
      if (have_ < buf_.size()) continue;
    }
    auto f = DecodeMpaFrame(buf_, expect_reply_);
    if (!f.ok()) {
      error_ = f.status();
      return Outcome::kBadFrame;
    }
    frame_ = std::move(*f);
    return Outcome::kDone;
  }
}

MpaFrame MakeMpaRequest(const MpaLocal& local, std::span<const uint8_t> private_data) {
  MpaFrame f;
  f.reply = false;
  f.crc = local.crc;
  f.revision = local.enhanced ? kMpaRevision2 : kMpaRevision1;
  f.enhanced = local.enhanced;
  f.ird = std::min(local.ird, kMaxIrdOrd);
  f.ord = std::min(local.ord, kMaxIrdOrd);
  f.peer_to_peer = local.enhanced && local.peer_to_peer;
  f.rtr = f.peer_to_peer ? kRtrWrite : kRtrNone;
  f.private_data.assign(private_data.begin(), private_data.end());
  return f;
}

MpaFrame MakeMpaReply(const MpaFrame& req, const MpaLocal& local,
                      std::span<const uint8_t> private_data, bool reject, MpaNegotiated* out) {
  MpaFrame r;
  r.reply = true;
  r.crc = req.crc || local.crc;
  r.revision = req.enhanced ? kMpaRevision2 : kMpaRevision1;
  r.private_data.assign(private_data.begin(), private_data.end());
  if (req.markers) reject = true;  // we never send or accept markers
  r.reject = reject;
  if (req.enhanced) {
    r.enhanced = true;
    // Responder ORD <= initiator IRD; our IRD at least the initiator's ORD (relaxed,
    // capped like siw).
    uint16_t req_ird = req.ird == kMpaV2NoNegotiate ? kMaxIrdOrd : req.ird;
    uint16_t req_ord = req.ord == kMpaV2NoNegotiate ? kMaxIrdOrd : req.ord;
    r.ird = std::min<uint16_t>(std::max(local.ird, req_ord), kMaxIrdOrd);
    r.ord = std::min<uint16_t>(std::min(local.ord, req_ird), kMaxIrdOrd);
    if (req.peer_to_peer && local.peer_to_peer) {
      uint8_t pick = (req.rtr & kRtrWrite) ? kRtrWrite : (req.rtr & kRtrRead) ? kRtrRead : kRtrNone;
      if (pick != kRtrNone) {
        r.peer_to_peer = true;
        r.rtr = pick;
      }
    }
  } else {
    r.ird = std::min(local.ird, kMaxIrdOrd);
    r.ord = std::min(local.ord, kMaxIrdOrd);
  }
  if (out != nullptr && !reject) {
    out->crc = r.crc;
    out->ird = r.ird;
    out->ord = r.ord;
    out->rtr = r.peer_to_peer ? r.rtr : kRtrNone;
  }
  return r;
}

absl::StatusOr<MpaNegotiated> ProcessMpaReply(const MpaFrame& req, const MpaFrame& reply) {
  if (reply.markers) return absl::UnimplementedError("peer requires MPA markers");
  MpaNegotiated n;
  n.crc = req.crc || reply.crc;
  n.ird = req.ird;
  n.ord = req.ord;
  if (reply.enhanced) {
    // Our ORD must not exceed the responder's IRD.
    uint16_t rep_ird = reply.ird == kMpaV2NoNegotiate ? kMaxIrdOrd : reply.ird;
    n.ord = std::min<uint32_t>(req.ord, rep_ird);
    if (reply.peer_to_peer) {
      if (!req.peer_to_peer) return absl::InvalidArgumentError("unsolicited peer-to-peer reply");
      uint8_t common = reply.rtr & req.rtr;
      if (common & kRtrWrite) {
        n.rtr = kRtrWrite;
      } else {
        return absl::InvalidArgumentError("no matching RTR type");
      }
    }
  }
  return n;
}

}  // namespace iser::softiwarp
