#include "iser/transport/rdma/softiwarp/ddp_rdmap_wire.h"

#include <cstring>

#include "absl/strings/str_format.h"

namespace iser::softiwarp {

TermError MakeTermError(TermLayer layer, uint8_t etype, uint8_t ecode) {
  TermError e{layer, etype, ecode, false, false};
  switch (layer) {
    case TermLayer::kRdmap:
      if (etype == kRdmapEtypeRemoteProtection) {
        // Only Read Request and Send with Invalidate cause this: DDP + RDMA header.
        e.include_ddp = true;
        e.include_rdmap = true;
      } else if (etype == kRdmapEtypeRemoteOperation) {
        // Packet layout unknown after a version or opcode error.
        e.include_ddp = ecode != kRdmapEcodeVersion && ecode != kRdmapEcodeOpcode;
      }
      break;
    case TermLayer::kDdp:
      e.include_ddp = !((etype == kDdpEtypeTagged && ecode == kDdpEcodeTVersion) ||
                        (etype == kDdpEtypeUntagged && ecode == kDdpEcodeUtVersion) ||
                        etype == kDdpEtypeCatastrophic);
      break;
    case TermLayer::kLlp:
      break;
  }
  return e;
}

std::vector<uint8_t> EncodeTerminate(const TermError& err, std::span<const uint8_t> offending) {
  TerminateHdr t{};
  t.ddp.ctrl.ddp_ctrl = OpInfoOf(RdmapOpcode::kTerminate).ddp_ctrl;
  t.ddp.ctrl.rdmap_ctrl = OpInfoOf(RdmapOpcode::kTerminate).rdmap_ctrl;
  t.ddp.qn.set(kQnTerminate);
  t.ddp.msn.set(1);
  t.ddp.mo.set(0);

  std::vector<uint8_t> included;
  bool m = false, d = false, r = false;
  if (err.include_ddp && offending.size() >= kMinIwarpHdr) {
    bool tagged = offending[2] & kDdpFlagTagged;
    size_t ddp_len = tagged ? sizeof(TaggedHdr) : sizeof(UntaggedHdr);
    size_t len = ddp_len;
    auto op = static_cast<RdmapOpcode>(offending[3] & kRdmapOpcodeMask);
    if (err.include_rdmap && !tagged && op == RdmapOpcode::kReadRequest) {
      len = sizeof(ReadRequestHdr);
      r = true;
    } else if (err.include_rdmap && !tagged && IsSendWithInvalidate(op)) {
      r = true;  // the RDMAP header of a Send with Invalidate is inside the DDP header
    }
    if (offending.size() >= len) {
      included.assign(offending.begin(), offending.begin() + len);
      // Replace ULPDU_Length with the DDP segment (payload) length, as siw does.
      uint8_t op_index = static_cast<uint8_t>(op);
      uint32_t hdr_len = op_index < kNumRdmapOpcodes ? kOpTable[op_index].hdr_len : len;
      uint32_t fpdu_hdr_and_payload = (uint32_t{offending[0]} << 8 | offending[1]) + 2;
      uint32_t seg = fpdu_hdr_and_payload >= hdr_len ? fpdu_hdr_and_payload - hdr_len : 0;
      included[0] = static_cast<uint8_t>(seg >> 8);
      included[1] = static_cast<uint8_t>(seg);
      m = d = true;
    } else {
      r = false;
    }
  }
  uint32_t ctrl = uint32_t{static_cast<uint8_t>(err.layer)} << 28 | static_cast<uint32_t>(err.etype & 0xF) << 24 |
                  uint32_t{err.ecode} << 16 | (m ? kTermFlagM : 0) | (d ? kTermFlagD : 0) |
                  (r ? kTermFlagR : 0);
  t.term_ctrl.set(ctrl);
  std::vector<uint8_t> out(sizeof(t) + included.size());
  t.ddp.ctrl.mpa_len.set(static_cast<uint16_t>(out.size() - 2));
  std::memcpy(out.data(), &t, sizeof(t));
  if (!included.empty()) std::memcpy(out.data() + sizeof(t), included.data(), included.size());
  return out;
}

TerminateInfo DecodeTerminate(std::span<const uint8_t, sizeof(TerminateHdr)> hdr,
                              std::span<const uint8_t> rest) {
  TerminateHdr t;
  std::memcpy(&t, hdr.data(), sizeof(t));
  uint32_t c = t.term_ctrl.get();
  TerminateInfo info;
  info.layer = static_cast<TermLayer>((c & kTermLayerMask) >> 28);
  info.etype = static_cast<uint8_t>((c & kTermEtypeMask) >> 24);
  info.ecode = static_cast<uint8_t>((c & kTermEcodeMask) >> 16);
  info.m = c & kTermFlagM;
  info.d = c & kTermFlagD;
  info.r = c & kTermFlagR;
  if ((info.m || info.d) && rest.size() >= 2) {
    info.segment_length = static_cast<uint16_t>(rest[0] << 8 | rest[1]);
    info.terminated_hdrs.assign(rest.begin() + 2, rest.end());
  }
  return info;
}

std::string TermErrorString(TermLayer layer, uint8_t etype, uint8_t ecode) {
  static constexpr const char* kLayer[] = {"RDMAP", "DDP", "LLP"};
  auto l = static_cast<uint8_t>(layer);
  return absl::StrFormat("%s etype %u code 0x%02x", l < 3 ? kLayer[l] : "?", etype, ecode);
}

}  // namespace iser::softiwarp
