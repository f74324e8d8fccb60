// Sense data (SPC-4 4.5): the codes this device reports and the two formats it can
// build them in (fixed 0x70, descriptor 0x72, chosen by the control mode page D_SENSE).
#ifndef ISER_SCSI_SENSE_H_
#define ISER_SCSI_SENSE_H_

#include <cstdint>
#include <optional>
#include <vector>

namespace iser::scsi {

// Sense keys.
namespace sk {
inline constexpr uint8_t kNoSense = 0x0;
inline constexpr uint8_t kNotReady = 0x2;
inline constexpr uint8_t kMediumError = 0x3;
inline constexpr uint8_t kHardwareError = 0x4;
inline constexpr uint8_t kIllegalRequest = 0x5;
inline constexpr uint8_t kUnitAttention = 0x6;
inline constexpr uint8_t kDataProtect = 0x7;
inline constexpr uint8_t kAbortedCommand = 0xb;
inline constexpr uint8_t kMiscompare = 0xe;
}  // namespace sk

struct SenseCode {
  uint8_t key = 0;
  uint8_t asc = 0;
  uint8_t ascq = 0;
  friend bool operator==(const SenseCode&, const SenseCode&) = default;
};

namespace sense {
inline constexpr SenseCode kNoSense{sk::kNoSense, 0x00, 0x00};
inline constexpr SenseCode kInvalidOpcode{sk::kIllegalRequest, 0x20, 0x00};
inline constexpr SenseCode kLbaOutOfRange{sk::kIllegalRequest, 0x21, 0x00};
inline constexpr SenseCode kInvalidFieldInCdb{sk::kIllegalRequest, 0x24, 0x00};
inline constexpr SenseCode kLunNotSupported{sk::kIllegalRequest, 0x25, 0x00};
inline constexpr SenseCode kInvalidFieldInParameterList{sk::kIllegalRequest, 0x26, 0x00};
inline constexpr SenseCode kInvalidReleaseOfPr{sk::kIllegalRequest, 0x26, 0x04};
inline constexpr SenseCode kParameterListLengthError{sk::kIllegalRequest, 0x1a, 0x00};
inline constexpr SenseCode kSavingParametersNotSupported{sk::kIllegalRequest, 0x39, 0x00};
inline constexpr SenseCode kInsufficientRegistrationResources{sk::kIllegalRequest, 0x55, 0x04};
inline constexpr SenseCode kMediumRemovalPrevented{sk::kIllegalRequest, 0x53, 0x02};
inline constexpr SenseCode kWriteProtected{sk::kDataProtect, 0x27, 0x00};
inline constexpr SenseCode kMiscompareDuringVerify{sk::kMiscompare, 0x1d, 0x00};
inline constexpr SenseCode kNotReadyStartUnitRequired{sk::kNotReady, 0x04, 0x02};
inline constexpr SenseCode kMediumNotPresent{sk::kNotReady, 0x3a, 0x00};
inline constexpr SenseCode kReadError{sk::kMediumError, 0x11, 0x00};
inline constexpr SenseCode kWriteError{sk::kMediumError, 0x0c, 0x00};
inline constexpr SenseCode kInternalTargetFailure{sk::kHardwareError, 0x44, 0x00};
inline constexpr SenseCode kInvalidFieldInInformationUnit{sk::kAbortedCommand, 0x0e, 0x03};
// Unit attentions.
inline constexpr SenseCode kPowerOnReset{sk::kUnitAttention, 0x29, 0x00};
inline constexpr SenseCode kPowerOnOccurred{sk::kUnitAttention, 0x29, 0x01};
inline constexpr SenseCode kBusResetOccurred{sk::kUnitAttention, 0x29, 0x02};
inline constexpr SenseCode kLunResetOccurred{sk::kUnitAttention, 0x29, 0x03};
inline constexpr SenseCode kITNexusLossOccurred{sk::kUnitAttention, 0x29, 0x07};
inline constexpr SenseCode kModeParametersChanged{sk::kUnitAttention, 0x2a, 0x01};
inline constexpr SenseCode kReservationsPreempted{sk::kUnitAttention, 0x2a, 0x03};
inline constexpr SenseCode kReservationsReleased{sk::kUnitAttention, 0x2a, 0x04};
inline constexpr SenseCode kRegistrationsPreempted{sk::kUnitAttention, 0x2a, 0x05};
inline constexpr SenseCode kCapacityDataChanged{sk::kUnitAttention, 0x2a, 0x09};
inline constexpr SenseCode kCommandsClearedByAnotherInitiator{sk::kUnitAttention, 0x2f, 0x00};
inline constexpr SenseCode kReportedLunsDataChanged{sk::kUnitAttention, 0x3f, 0x0e};
}  // namespace sense

// Sense-key specific "field pointer" (SPC-4 4.5.2.4.2): which byte/bit of the CDB or
// parameter list was bad.
struct FieldPointer {
  bool in_cdb = true;  // C/D
  uint16_t byte = 0;
  std::optional<uint8_t> bit;  // BPV + bit pointer
};

struct SenseDetail {
  std::optional<uint64_t> information;  // INFORMATION field (VALID bit in fixed format)
  std::optional<FieldPointer> field;
};

// Builds sense data in fixed (0x70) or descriptor (0x72) format.
std::vector<uint8_t> BuildSense(SenseCode code, bool descriptor_format,
                                const SenseDetail& detail = {});

// Parses key/ASC/ASCQ back out of sense data of either format (tests, REQUEST SENSE).
std::optional<SenseCode> ParseSense(const std::vector<uint8_t>& sense);

}  // namespace iser::scsi

#endif  // ISER_SCSI_SENSE_H_
