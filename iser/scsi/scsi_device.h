// SCSI block target emulation (SPC-4 / SBC-3) over a BlockStore. No networking here:
// the iSCSI target hands a fully assembled command (CDB + all Data-Out bytes) to
// Device::Execute() and sends back whatever the command produced.
//
// Threading: Execute() may be called from several event-loop threads at once (one per
// session). Per-LU state shared across nexuses (reservations, unit attentions, mode
// pages) is control-plane state behind a mutex; data transfer goes straight to the
// BlockStore from the calling thread, whose completion runs on that same thread.
#ifndef ISER_SCSI_SCSI_DEVICE_H_
#define ISER_SCSI_SCSI_DEVICE_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "iser/store/block_store.h"

namespace iser::scsi {

// SAM status codes.
enum class ScsiStatus : uint8_t {
  kGood = 0x00,
  kCheckCondition = 0x02,
  kConditionMet = 0x04,
  kBusy = 0x08,
  kReservationConflict = 0x18,
  kTaskSetFull = 0x28,
  kTaskAborted = 0x40,
};

// An I_T nexus as SCSI sees it. For iSCSI the initiator port name is
// "<InitiatorName>,i,0x<ISID as 12 hex digits>" (RFC 7143 sec 4.4.2 / SPC-4 TransportID).
struct ItNexus {
  uint64_t id = 0;             // unique for the life of the process (the session id)
  std::string initiator_name;  // iSCSI name, e.g. iqn.2007-10.com.github:sahlberg:...
  std::string initiator_port;  // initiator_name + ",i,0x" + isid hex
  uint64_t isid = 0;           // 48 bits
  uint16_t relative_target_port = 1;
  uint16_t target_portal_group_tag = 1;
};

enum class TaskAttribute : uint8_t {
  kUntagged = 0,
  kSimple = 1,
  kOrdered = 2,
  kHeadOfQueue = 3,
  kAca = 4
};

// One SCSI command. The caller owns it and keeps it alive until `done` runs.
struct ScsiTask {
  // ---- inputs ----
  const ItNexus* nexus = nullptr;
  uint64_t lun = 0;              // the LUN as the transport decoded it (0..16383)
  std::span<const uint8_t> cdb;  // 6..260 bytes
  TaskAttribute attribute = TaskAttribute::kSimple;
  uint32_t expected_transfer_length = 0;  // iSCSI EDTL, bytes
  bool data_out_expected = false;         // iSCSI W bit
  bool data_in_expected = false;          // iSCSI R bit
  std::span<const uint8_t> data_out;      // all write data the initiator sent (<= EDTL)
  std::span<uint8_t> data_in;             // read buffer, sized EDTL by the caller

  // ---- outputs, valid when `done` runs ----
  ScsiStatus status = ScsiStatus::kGood;
  std::vector<uint8_t> sense;   // sense data bytes (fixed or descriptor format)
  uint32_t data_in_length = 0;  // bytes placed at the start of data_in
  // Bytes the CDB itself asks to move (its transfer/allocation length, in bytes) so the
  // transport can report residual overflow/underflow against EDTL.
  //
  // Precisely: the number of bytes the command would have moved had EDTL been unlimited.
  //  - media commands (READ/WRITE/VERIFY BYTCHK/WRITE SAME/COMPARE AND WRITE...): transfer
  //    length * block size (COMPARE AND WRITE: 2 * blocks * block size);
  //  - allocation-length commands (INQUIRY, MODE SENSE...): min(allocation length, bytes
  //    the device has to return), so a short answer to a big allocation is an underflow;
  //  - parameter-list commands (MODE SELECT, UNMAP, PR OUT): the parameter list length.
  // The transport reports: cdb_transfer_length > EDTL -> overflow, residual = difference;
  // cdb_transfer_length < EDTL -> underflow, residual = difference. data_in_length never
  // exceeds data_in.size() (EDTL). For writes with EDTL < transfer length only the whole
  // blocks present in data_out are written (libiscsi iSCSIResiduals expects GOOD).
  uint32_t cdb_transfer_length = 0;

  // Optional: runs a closure later on the thread that owns this task (the session's event
  // loop). Used when a command that had to wait (COMPARE AND WRITE queued behind another
  // one on the same LU) is resumed by a completion on another thread. When unset the
  // command resumes on whichever thread released it.
  std::function<void(std::function<void()>)> post_to_owner;
};

struct LogicalUnitConfig {
  std::string vendor = "ISERCSI";       // INQUIRY T10 vendor, padded to 8
  std::string product = "iser-target";  // padded to 16
  std::string revision = "0001";        // padded to 4
  std::string serial;                   // VPD 0x80; also seeds the NAA designator
  uint64_t naa_id = 0;                  // low 60 bits of an NAA type 6 designator (VPD 0x83)
  std::string target_name;              // SCSI name string designator (target IQN)
  bool read_only = false;
  bool write_cache_enabled = true;         // MODE SENSE caching page WCE
  uint32_t max_transfer_bytes = 8u << 20;  // VPD 0xB0 MAXIMUM TRANSFER LENGTH (bytes)
  // Physical block size reported through READ CAPACITY(16) LBPPBE and the unmap
  // granularity (VPD 0xB0); ignored unless a power-of-two multiple of the block size.
  // Default 0 (LBPPBE = 0): libiscsi GetLBAStatus.UnmapSingle can only pass with one
  // logical block per physical block (it expects LBA i+1 reported as i+LBPPB).
  uint32_t physical_block_size = 0;
};

class LogicalUnit;

// A SCSI target device: the LUN map plus commands that do not address one LU
// (REPORT LUNS, commands to LUNs that do not exist).
class Device {
 public:
  Device();
  ~Device();

  // Adds LU number `lun` (fails if taken). The device shares ownership of the store.
  absl::Status AddLogicalUnit(uint64_t lun, std::shared_ptr<store::BlockStore> store,
                              LogicalUnitConfig config);
  LogicalUnit* FindLogicalUnit(uint64_t lun);
  std::vector<uint64_t> Luns() const;

  // Executes `task`; `done` runs exactly once, inline or later on this thread.
  void Execute(ScsiTask& task, absl::AnyInvocable<void()> done);

  // ---- events from the transport (SAM task management and nexus life cycle) ----
  void NexusCreated(const ItNexus& nexus);  // may establish a power-on/reset UA
  void NexusLost(const ItNexus& nexus);     // session ended: drops RESERVE(6) etc.
  void LogicalUnitReset(uint64_t lun, const ItNexus& by);
  void TargetReset(bool cold, const ItNexus& by);
  // The store behind `lun` changed size: unit attention CAPACITY DATA HAS CHANGED.
  absl::Status Resize(uint64_t lun, uint64_t new_size_bytes);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Builds fixed-format sense data (SPC-4 4.5.3), e.g. ILLEGAL REQUEST / INVALID FIELD IN
// CDB = FixedSense(0x05, 0x24, 0x00).
std::vector<uint8_t> FixedSense(uint8_t key, uint8_t asc, uint8_t ascq);

}  // namespace iser::scsi

#endif  // ISER_SCSI_SCSI_DEVICE_H_
