// Big-endian field access for CDBs and parameter data (SPC-4 3.5: all multi-byte fields
// are big-endian). Callers check bounds first; these never read past `p + N`.
#ifndef ISER_SCSI_CDB_H_
#define ISER_SCSI_CDB_H_

#include <cstdint>

namespace iser::scsi {

inline uint16_t Get16(const uint8_t* p) { return uint16_t(p[0] << 8 | p[1]); }
inline uint32_t Get24(const uint8_t* p) {
  return uint32_t(p[0]) << 16 | uint32_t(p[1]) << 8 | p[2];
}
inline uint32_t Get32(const uint8_t* p) {
  return uint32_t(p[0]) << 24 | uint32_t(p[1]) << 16 | uint32_t(p[2]) << 8 | p[3];
}
inline uint64_t Get64(const uint8_t* p) { return uint64_t(Get32(p)) << 32 | Get32(p + 4); }

inline void Put16(uint8_t* p, uint16_t v) {
  p[0] = uint8_t(v >> 8);
  p[1] = uint8_t(v);
}
inline void Put24(uint8_t* p, uint32_t v) {
  p[0] = uint8_t(v >> 16);
  p[1] = uint8_t(v >> 8);
  p[2] = uint8_t(v);
}
inline void Put32(uint8_t* p, uint32_t v) {
  Put16(p, uint16_t(v >> 16));
  Put16(p + 2, uint16_t(v));
}
inline void Put64(uint8_t* p, uint64_t v) {
  Put32(p, uint32_t(v >> 32));
  Put32(p + 4, uint32_t(v));
}

// Operation codes (SPC-4 / SBC-3).
namespace op {
inline constexpr uint8_t kTestUnitReady = 0x00;
inline constexpr uint8_t kRequestSense = 0x03;
inline constexpr uint8_t kRead6 = 0x08;
inline constexpr uint8_t kWrite6 = 0x0a;
inline constexpr uint8_t kInquiry = 0x12;
inline constexpr uint8_t kModeSelect6 = 0x15;
inline constexpr uint8_t kReserve6 = 0x16;
inline constexpr uint8_t kRelease6 = 0x17;
inline constexpr uint8_t kModeSense6 = 0x1a;
inline constexpr uint8_t kStartStopUnit = 0x1b;
inline constexpr uint8_t kPreventAllow = 0x1e;
inline constexpr uint8_t kReadCapacity10 = 0x25;
inline constexpr uint8_t kRead10 = 0x28;
inline constexpr uint8_t kWrite10 = 0x2a;
inline constexpr uint8_t kWriteVerify10 = 0x2e;
inline constexpr uint8_t kVerify10 = 0x2f;
inline constexpr uint8_t kPreFetch10 = 0x34;
inline constexpr uint8_t kSynchronizeCache10 = 0x35;
inline constexpr uint8_t kReadDefectData10 = 0x37;
inline constexpr uint8_t kWriteSame10 = 0x41;
inline constexpr uint8_t kUnmap = 0x42;
inline constexpr uint8_t kModeSelect10 = 0x55;
inline constexpr uint8_t kReserve10 = 0x56;
inline constexpr uint8_t kRelease10 = 0x57;
inline constexpr uint8_t kModeSense10 = 0x5a;
inline constexpr uint8_t kPersistentReserveIn = 0x5e;
inline constexpr uint8_t kPersistentReserveOut = 0x5f;
inline constexpr uint8_t kRead16 = 0x88;
inline constexpr uint8_t kCompareAndWrite = 0x89;
inline constexpr uint8_t kWrite16 = 0x8a;
inline constexpr uint8_t kOrWrite16 = 0x8b;
inline constexpr uint8_t kWriteVerify16 = 0x8e;
inline constexpr uint8_t kVerify16 = 0x8f;
inline constexpr uint8_t kPreFetch16 = 0x90;
inline constexpr uint8_t kSynchronizeCache16 = 0x91;
inline constexpr uint8_t kWriteSame16 = 0x93;
inline constexpr uint8_t kServiceActionIn16 = 0x9e;
inline constexpr uint8_t kReportLuns = 0xa0;
inline constexpr uint8_t kMaintenanceIn = 0xa3;
inline constexpr uint8_t kRead12 = 0xa8;
inline constexpr uint8_t kWrite12 = 0xaa;
inline constexpr uint8_t kWriteVerify12 = 0xae;
inline constexpr uint8_t kVerify12 = 0xaf;
inline constexpr uint8_t kReadDefectData12 = 0xb7;

// Service actions.
inline constexpr uint8_t kSaReadCapacity16 = 0x10;
inline constexpr uint8_t kSaGetLbaStatus = 0x12;
inline constexpr uint8_t kSaReportTargetPortGroups = 0x0a;
inline constexpr uint8_t kSaReportSupportedOpcodes = 0x0c;
}  // namespace op

}  // namespace iser::scsi

#endif  // ISER_SCSI_CDB_H_
