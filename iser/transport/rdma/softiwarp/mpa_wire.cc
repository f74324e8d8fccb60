#include "iser/transport/rdma/softiwarp/mpa_wire.h"

#include <algorithm>
#include <cstring>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace iser::softiwarp {

absl::StatusOr<std::vector<uint8_t>> EncodeMpaFrame(const MpaFrame& frame, size_t pd_limit) {
  size_t pd_len = frame.private_data.size() + (frame.enhanced ? sizeof(MpaV2Word) : 0);
  if (pd_len > std::min(pd_limit, kMpaMaxPrivateData))
    return absl::InvalidArgumentError(absl::StrCat("MPA private data too long: ", pd_len));
  std::vector<uint8_t> out(sizeof(MpaFrameHeader) + pd_len);
  MpaFrameHeader hdr{};
  std::memcpy(hdr.key, frame.reply ? kMpaRepKey : kMpaReqKey, kMpaKeySize);
  hdr.flags = (frame.markers ? kMpaFlagMarkers : 0) | (frame.crc ? kMpaFlagCrc : 0) |
              (frame.reject ? kMpaFlagReject : 0) | (frame.enhanced ? kMpaFlagEnhanced : 0);
  hdr.revision = frame.enhanced ? std::max<uint8_t>(frame.revision, kMpaRevision2)
                                : frame.revision;
  hdr.pd_length.set(static_cast<uint16_t>(pd_len));
  std::memcpy(out.data(), &hdr, sizeof(hdr));
  size_t off = sizeof(hdr);
  if (frame.enhanced) {
    MpaV2Word w{};
    uint16_t ird = frame.ird & kMpaV2IrdOrdMask;
    uint16_t ord = frame.ord & kMpaV2IrdOrdMask;
    if (frame.peer_to_peer) {
      ird |= kMpaV2PeerToPeer;
      if (frame.rtr & kRtrSend) ird |= kMpaV2RtrSend;
      if (frame.rtr & kRtrWrite) ord |= kMpaV2RtrWrite;
      if (frame.rtr & kRtrRead) ord |= kMpaV2RtrRead;
    }
    w.ird.set(ird);
    w.ord.set(ord);
    std::memcpy(out.data() + off, &w, sizeof(w));
    off += sizeof(w);
  }
  if (!frame.private_data.empty())
    std::memcpy(out.data() + off, frame.private_data.data(), frame.private_data.size());
  return out;
}

absl::StatusOr<uint16_t> DecodeMpaHeader(std::span<const uint8_t, sizeof(MpaFrameHeader)> bytes,
                                         bool expect_reply) {
  MpaFrameHeader hdr;
  std::memcpy(&hdr, bytes.data(), sizeof(hdr));
  if (std::memcmp(hdr.key, expect_reply ? kMpaRepKey : kMpaReqKey, kMpaKeySize) != 0)
    return absl::InvalidArgumentError("MPA frame: bad key");
  uint16_t pd_len = hdr.pd_length.get();
  if (pd_len > kMpaMaxPrivateData)
    return absl::InvalidArgumentError(absl::StrCat("MPA frame: PD_Length ", pd_len, " > 512"));
  if (!expect_reply && (hdr.flags & kMpaFlagReject))
    return absl::InvalidArgumentError("MPA request with R bit");
  return pd_len;
}

absl::StatusOr<MpaFrame> DecodeMpaFrame(std::span<const uint8_t> bytes, bool expect_reply) {
  if (bytes.size() < sizeof(MpaFrameHeader))
    return absl::InvalidArgumentError("MPA frame: short header");
  auto pd_len = DecodeMpaHeader(bytes.first<sizeof(MpaFrameHeader)>(), expect_reply);
  if (!pd_len.ok()) return pd_len.status();
  if (bytes.size() != sizeof(MpaFrameHeader) + *pd_len)
    return absl::InvalidArgumentError("MPA frame: length does not match PD_Length");
  MpaFrame f;
  f.reply = expect_reply;
  uint8_t flags = bytes[16];
  f.markers = flags & kMpaFlagMarkers;
  f.crc = flags & kMpaFlagCrc;
  f.reject = flags & kMpaFlagReject;
  f.revision = bytes[17];
  std::span<const uint8_t> pd = bytes.subspan(sizeof(MpaFrameHeader));
  // v2 is honoured only with Rev >= 2 and S=1 (as siw); S with Rev < 2 is ignored.
  if ((flags & kMpaFlagEnhanced) && f.revision >= kMpaRevision2) {
    if (pd.size() < sizeof(MpaV2Word))
      return absl::InvalidArgumentError("MPA v2 frame without IRD/ORD word");
    MpaV2Word w;
    std::memcpy(&w, pd.data(), sizeof(w));
    uint16_t ird = w.ird.get(), ord = w.ord.get();
    f.enhanced = true;
    f.ird = ird & kMpaV2IrdOrdMask;
    f.ord = ord & kMpaV2IrdOrdMask;
    f.peer_to_peer = ird & kMpaV2PeerToPeer;
    if (f.peer_to_peer) {
      if (ird & kMpaV2RtrSend) f.rtr |= kRtrSend;
      if (ord & kMpaV2RtrWrite) f.rtr |= kRtrWrite;
      if (ord & kMpaV2RtrRead) f.rtr |= kRtrRead;
    }
    pd = pd.subspan(sizeof(MpaV2Word));
  }
  f.private_data.assign(pd.begin(), pd.end());
  return f;
}

uint32_t MulpduForEmss(uint32_t emss) {
  uint32_t overhead = 6 + emss % 4;
  uint32_t m = emss > overhead ? emss - overhead : 0;
  m = std::max<uint32_t>(m, 128);
  // ULPDU_Length is 16 bits; keep 2 + ULPDU a multiple of 4 so no pad is needed.
  return std::min<uint32_t>(m, 65534);
}

}  // namespace iser::softiwarp
