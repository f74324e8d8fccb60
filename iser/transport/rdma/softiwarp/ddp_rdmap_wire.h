// DDP (RFC 5041) and RDMAP (RFC 5040) wire format as it sits in an FPDU, offsets
// counted from the ULPDU_Length field (offset 0) like siw's iwarp.h. One opcode table
// drives both transmit (header templates) and receive (header lengths, queue numbers).
#ifndef ISER_TRANSPORT_RDMA_SOFTIWARP_DDP_RDMAP_WIRE_H_
#define ISER_TRANSPORT_RDMA_SOFTIWARP_DDP_RDMAP_WIRE_H_

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "iser/transport/rdma/softiwarp/be.h"

namespace iser::softiwarp {

// DDP control byte (offset 2).
inline constexpr uint8_t kDdpFlagTagged = 0x80;
inline constexpr uint8_t kDdpFlagLast = 0x40;
inline constexpr uint8_t kDdpVersionMask = 0x03;
inline constexpr uint8_t kDdpVersion = 1;
// RDMAP control byte (offset 3).
inline constexpr uint8_t kRdmapVersionMask = 0xC0;
inline constexpr uint8_t kRdmapVersion = 1;  // 01b in the top two bits
inline constexpr uint8_t kRdmapOpcodeMask = 0x0F;

enum class RdmapOpcode : uint8_t {
  kRdmaWrite = 0,
  kReadRequest = 1,
  kReadResponse = 2,
  kSend = 3,
  kSendInv = 4,
  kSendSe = 5,
  kSendSeInv = 6,
  kTerminate = 7,
};
inline constexpr uint8_t kNumRdmapOpcodes = 8;

// Untagged queue numbers (RFC 5040 Fig. 4).
inline constexpr uint32_t kQnSend = 0;
inline constexpr uint32_t kQnReadRequest = 1;
inline constexpr uint32_t kQnTerminate = 2;
inline constexpr uint32_t kNumUntaggedQueues = 3;

struct IwarpCtrl {
  Be16 mpa_len;  // ULPDU_Length
  uint8_t ddp_ctrl;
  uint8_t rdmap_ctrl;
};
static_assert(sizeof(IwarpCtrl) == 4);

struct TaggedHdr {  // RDMA Write, Read Response
  IwarpCtrl ctrl;
  Be32 stag;
  Be64 to;
};
static_assert(sizeof(TaggedHdr) == 16);

struct UntaggedHdr {  // Send family, Read Request, Terminate
  IwarpCtrl ctrl;
  Be32 inval_stag;  // RsvdULP; the Invalidate STag for Send with Invalidate
  Be32 qn;
  Be32 msn;
  Be32 mo;
};
static_assert(sizeof(UntaggedHdr) == 20);

struct ReadRequestHdr {
  UntaggedHdr ddp;
  Be32 sink_stag;
  Be64 sink_to;
  Be32 read_size;
  Be32 src_stag;
  Be64 src_to;
};
static_assert(sizeof(ReadRequestHdr) == 48);
inline constexpr size_t kRdmaReadRequestFields = 28;

struct TerminateHdr {
  UntaggedHdr ddp;
  Be32 term_ctrl;  // Layer(4) | EType(4) | ErrCode(8) | M | D | R | Rsvd(13)
};
static_assert(sizeof(TerminateHdr) == 24);
inline constexpr uint32_t kTermLayerMask = 0xF0000000;
inline constexpr uint32_t kTermEtypeMask = 0x0F000000;
inline constexpr uint32_t kTermEcodeMask = 0x00FF0000;
inline constexpr uint32_t kTermFlagM = 0x8000;
inline constexpr uint32_t kTermFlagD = 0x4000;
inline constexpr uint32_t kTermFlagR = 0x2000;
// Largest Terminate payload after TerminateHdr: segment length + untagged DDP header +
// Read Request RDMA header.
inline constexpr size_t kMaxTerminatePayload = 2 + 18 + kRdmaReadRequestFields;

// Largest header of any opcode.
inline constexpr size_t kMaxIwarpHdr = sizeof(ReadRequestHdr);
// Every FPDU starts with at least this many header bytes (tagged header); the smallest
// valid FPDU (zero-length tagged: 16 + CRC) is larger, so reading this much never
// crosses into the next FPDU.
inline constexpr size_t kMinIwarpHdr = sizeof(TaggedHdr);

struct OpInfo {
  const char* name;
  uint8_t hdr_len;     // from offset 0, i.e. including ULPDU_Length
  bool tagged;
  uint32_t qn;         // untagged only
  uint8_t ddp_ctrl;    // for a last segment
  uint8_t rdmap_ctrl;
};

inline constexpr uint8_t kRdmapCtrl(RdmapOpcode op) {
  return static_cast<uint8_t>(kRdmapVersion << 6 | static_cast<uint8_t>(op));
}

inline constexpr OpInfo kOpTable[kNumRdmapOpcodes] = {
    {"RDMA Write", sizeof(TaggedHdr), true, 0, 0xC1, kRdmapCtrl(RdmapOpcode::kRdmaWrite)},
    {"Read Request", sizeof(ReadRequestHdr), false, kQnReadRequest, 0x41,
     kRdmapCtrl(RdmapOpcode::kReadRequest)},
    {"Read Response", sizeof(TaggedHdr), true, 0, 0xC1, kRdmapCtrl(RdmapOpcode::kReadResponse)},
    {"Send", sizeof(UntaggedHdr), false, kQnSend, 0x41, kRdmapCtrl(RdmapOpcode::kSend)},
    {"Send with Invalidate", sizeof(UntaggedHdr), false, kQnSend, 0x41,
     kRdmapCtrl(RdmapOpcode::kSendInv)},
    {"Send with SE", sizeof(UntaggedHdr), false, kQnSend, 0x41, kRdmapCtrl(RdmapOpcode::kSendSe)},
    {"Send with SE and Invalidate", sizeof(UntaggedHdr), false, kQnSend, 0x41,
     kRdmapCtrl(RdmapOpcode::kSendSeInv)},
    {"Terminate", sizeof(TerminateHdr), false, kQnTerminate, 0x41,
     kRdmapCtrl(RdmapOpcode::kTerminate)},
};

inline const OpInfo& OpInfoOf(RdmapOpcode op) { return kOpTable[static_cast<uint8_t>(op)]; }
inline bool IsSendFamily(RdmapOpcode op) {
  return op >= RdmapOpcode::kSend && op <= RdmapOpcode::kSendSeInv;
}
inline bool IsSendWithInvalidate(RdmapOpcode op) {
  return op == RdmapOpcode::kSendInv || op == RdmapOpcode::kSendSeInv;
}
inline bool IsSolicited(RdmapOpcode op) {
  return op == RdmapOpcode::kSendSe || op == RdmapOpcode::kSendSeInv;
}

// ---- Terminate error codes (RFC 5040 sec 7, RFC 5041 sec 7, RFC 6581) ----
enum class TermLayer : uint8_t { kRdmap = 0, kDdp = 1, kLlp = 2 };

// RDMAP error types.
inline constexpr uint8_t kRdmapEtypeCatastrophic = 0;
inline constexpr uint8_t kRdmapEtypeRemoteProtection = 1;
inline constexpr uint8_t kRdmapEtypeRemoteOperation = 2;
// RDMAP codes.
inline constexpr uint8_t kRdmapEcodeInvalidStag = 0x00;
inline constexpr uint8_t kRdmapEcodeBaseBounds = 0x01;
inline constexpr uint8_t kRdmapEcodeAccessRights = 0x02;
inline constexpr uint8_t kRdmapEcodeStagNotAssoc = 0x03;
inline constexpr uint8_t kRdmapEcodeToWrap = 0x04;
inline constexpr uint8_t kRdmapEcodeVersion = 0x05;
inline constexpr uint8_t kRdmapEcodeOpcode = 0x06;
inline constexpr uint8_t kRdmapEcodeCatastrophicStream = 0x07;
inline constexpr uint8_t kRdmapEcodeCatastrophicGlobal = 0x08;
inline constexpr uint8_t kRdmapEcodeCantInvalidate = 0x09;
inline constexpr uint8_t kRdmapEcodeUnspecified = 0xFF;
// DDP error types.
inline constexpr uint8_t kDdpEtypeCatastrophic = 0;
inline constexpr uint8_t kDdpEtypeTagged = 1;
inline constexpr uint8_t kDdpEtypeUntagged = 2;
// DDP tagged codes.
inline constexpr uint8_t kDdpEcodeTInvalidStag = 0x00;
inline constexpr uint8_t kDdpEcodeTBaseBounds = 0x01;
inline constexpr uint8_t kDdpEcodeTStagNotAssoc = 0x02;
inline constexpr uint8_t kDdpEcodeTToWrap = 0x03;
inline constexpr uint8_t kDdpEcodeTVersion = 0x04;
// DDP untagged codes.
inline constexpr uint8_t kDdpEcodeUtInvalidQn = 0x01;
inline constexpr uint8_t kDdpEcodeUtNoBuffer = 0x02;
inline constexpr uint8_t kDdpEcodeUtMsnRange = 0x03;
inline constexpr uint8_t kDdpEcodeUtInvalidMo = 0x04;
inline constexpr uint8_t kDdpEcodeUtTooLong = 0x05;
inline constexpr uint8_t kDdpEcodeUtVersion = 0x06;
// LLP (MPA) error type 0 codes.
inline constexpr uint8_t kLlpEtypeMpa = 0;
inline constexpr uint8_t kLlpEcodeTcpLost = 0x01;
inline constexpr uint8_t kLlpEcodeCrc = 0x02;
inline constexpr uint8_t kLlpEcodeMarker = 0x03;
inline constexpr uint8_t kLlpEcodeBadFrame = 0x04;
inline constexpr uint8_t kLlpEcodeLocalCatastrophic = 0x05;
inline constexpr uint8_t kLlpEcodeInsufficientIrd = 0x06;
inline constexpr uint8_t kLlpEcodeNoMatchingRtr = 0x07;

// A Terminate to send: which error, and which headers of the offending inbound
// segment to include (RFC 5040 Fig. 10).
struct TermError {
  TermLayer layer = TermLayer::kRdmap;
  uint8_t etype = 0;
  uint8_t ecode = 0;
  bool include_ddp = false;    // M and D: segment length + DDP header
  bool include_rdmap = false;  // R: the RDMAP header (28 bytes of a Read Request)

  bool operator==(const TermError&) const = default;
};

// Standard choices of included headers.
TermError MakeTermError(TermLayer layer, uint8_t etype, uint8_t ecode);

// Builds a complete Terminate ULPDU+header (offsets from 0, ULPDU_Length filled in,
// no pad/CRC): untagged QN 2, MSN 1, MO 0, last segment. `offending` is the complete
// iWARP header of the inbound segment that caused the error (may be empty); its
// ULPDU_Length field is replaced by the DDP segment (payload) length in the copy.
std::vector<uint8_t> EncodeTerminate(const TermError& err, std::span<const uint8_t> offending);

// A decoded inbound Terminate.
struct TerminateInfo {
  TermLayer layer;
  uint8_t etype;
  uint8_t ecode;
  bool m, d, r;
  uint16_t segment_length = 0;           // if m
  std::vector<uint8_t> terminated_hdrs;  // what followed the control word (after seg len)
};
// `hdr` is the 24-byte TerminateHdr, `rest` the Terminate's payload.
TerminateInfo DecodeTerminate(std::span<const uint8_t, sizeof(TerminateHdr)> hdr,
                              std::span<const uint8_t> rest);
std::string TermErrorString(TermLayer layer, uint8_t etype, uint8_t ecode);

}  // namespace iser::softiwarp

#endif  // ISER_TRANSPORT_RDMA_SOFTIWARP_DDP_RDMAP_WIRE_H_
