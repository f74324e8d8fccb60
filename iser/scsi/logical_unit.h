// One logical unit: its BlockStore, its configuration and the per-LU control-plane state
// that all nexuses share (mode pages, unit attentions, reservations). Internal to
// iser_scsi; the public face is Device.
#ifndef ISER_SCSI_LOGICAL_UNIT_H_
#define ISER_SCSI_LOGICAL_UNIT_H_

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/functional/any_invocable.h"
#include "absl/synchronization/mutex.h"
#include "iser/scsi/command.h"
#include "iser/scsi/scsi_device.h"
#include "iser/scsi/sense.h"
#include "iser/store/block_store.h"

namespace iser::scsi {

// Limits reported in the Block Limits VPD page and enforced by the handlers.
struct BlockLimits {
  uint32_t max_transfer_blocks = 0;        // MAXIMUM TRANSFER LENGTH
  uint32_t optimal_transfer_blocks = 0;    // OPTIMAL TRANSFER LENGTH
  uint8_t max_compare_write_blocks = 255;  // MAXIMUM COMPARE AND WRITE LENGTH
  uint32_t max_unmap_blocks = 0;           // MAXIMUM UNMAP LBA COUNT
  uint32_t max_unmap_descriptors = 256;    // MAXIMUM UNMAP BLOCK DESCRIPTOR COUNT
  uint64_t max_write_same_blocks = 0;      // MAXIMUM WRITE SAME LENGTH
  uint8_t physical_exponent = 0;           // LBPPBE: 2^n logical blocks per physical block
};

// Current values of the changeable mode parameters.
struct ModeParams {
  bool wce = true;  // caching page
  bool rcd = false;
  bool d_sense = false;  // control page
  bool swp = false;
  bool dexcpt = true;  // informational exceptions page
  bool ewasc = false;
  bool test = false;
  uint8_t mrie = 0;
  uint32_t interval_timer = 0;
  uint32_t report_count = 0;
  friend bool operator==(const ModeParams&, const ModeParams&) = default;
};

enum class PrType : uint8_t {
  kWriteExclusive = 1,
  kExclusiveAccess = 3,
  kWriteExclusiveRegistrantsOnly = 5,
  kExclusiveAccessRegistrantsOnly = 6,
  kWriteExclusiveAllRegistrants = 7,
  kExclusiveAccessAllRegistrants = 8,
};

struct PrRegistration {
  std::string nexus_key;
  std::string initiator_port;  // TransportID name for READ FULL STATUS
  uint16_t relative_target_port = 1;
  uint64_t key = 0;
};

struct PrState {
  uint32_t generation = 0;
  std::vector<PrRegistration> registrations;  // one per I_T nexus
  bool reserved = false;
  PrType type = PrType::kWriteExclusive;
  std::string holder;  // nexus key of the holder (unused for all-registrants types)
  bool aptpl = false;

  const PrRegistration* Find(const std::string& nexus) const;
  bool AllRegistrants() const {
    return type == PrType::kWriteExclusiveAllRegistrants ||
           type == PrType::kExclusiveAccessAllRegistrants;
  }
  bool IsHolder(const std::string& nexus) const {
    if (!reserved) return false;
    if (AllRegistrants()) return Find(nexus) != nullptr;
    return holder == nexus;
  }
};

// What a command does with respect to reservations (SPC-4 5.13.1, SBC-3 4.17).
enum class Access : uint8_t {
  kAlways,   // INQUIRY, REPORT LUNS, REQUEST SENSE, PR IN ...: never conflicts
  kNoData,   // TUR, READ CAPACITY ...: allowed under PR, conflicts under RESERVE(6)
  kRead,     // reads the medium: allowed under Write Exclusive
  kWrite,    // writes the medium
  kPrOut,    // PERSISTENT RESERVE OUT: own rules
  kReserve,  // RESERVE/RELEASE(6/10): own rules
};

class LogicalUnit {
 public:
  LogicalUnit(uint64_t lun, std::shared_ptr<store::BlockStore> store, LogicalUnitConfig config);

  uint64_t lun() const { return lun_; }
  store::BlockStore& store() { return *store_; }
  const LogicalUnitConfig& config() const { return config_; }
  const BlockLimits& limits() const { return limits_; }
  uint32_t block_size() const { return store_->block_size(); }
  uint64_t num_blocks() const { return store_->num_blocks(); }

  // Runs the command (UA / reservation checks, then the handler).
  void Execute(CommandPtr cmd);

  // ---- events ----
  void NexusSeen(const std::string& nexus_key);
  void NexusCreated(const std::string& nexus_key);
  void NexusLost(const std::string& nexus_key);
  void Reset(SenseCode ua, bool clear_reservations);
  void CapacityChanged();

  // ---- unit attentions ----
  void AddUa(const std::string& nexus_key, SenseCode code);
  void AddUaAllExcept(const std::string& except_nexus, SenseCode code);
  std::optional<SenseCode> PopUa(const std::string& nexus_key);

  // ---- state for the handlers ----
  ModeParams mode() const;
  void set_mode(const ModeParams& m, const std::string& by_nexus);
  bool WriteProtected() const;

  bool started() const;
  void set_started(bool s);
  bool PreventRemoval() const;
  void SetPrevent(const std::string& nexus, bool prevent);

  // COMPARE AND WRITE serialization: `run` is started now if no CAW is running on this LU,
  // otherwise queued (and started through `post`, when set, on its owner's thread); each
  // run calls CawDone() when finished.
  void RunCaw(absl::AnyInvocable<void()> run,
              std::function<void(std::function<void()>)> post = nullptr);
  void CawDone();

  mutable absl::Mutex mu;
  PrState pr ABSL_GUARDED_BY(mu);
  std::optional<std::string> spc2_holder ABSL_GUARDED_BY(mu);  // RESERVE(6)/(10)

 private:
  // Checks reservation conflicts for `cmd`; true = conflict.
  bool ReservationConflict(const Command& cmd) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu);

  const uint64_t lun_;
  std::shared_ptr<store::BlockStore> store_;
  const LogicalUnitConfig config_;
  BlockLimits limits_;

  ModeParams mode_ ABSL_GUARDED_BY(mu);
  bool started_ ABSL_GUARDED_BY(mu) = true;
  std::set<std::string> prevent_ ABSL_GUARDED_BY(mu);
  std::set<std::string> nexuses_ ABSL_GUARDED_BY(mu);
  std::map<std::string, std::deque<SenseCode>> ua_ ABSL_GUARDED_BY(mu);
  bool caw_running_ ABSL_GUARDED_BY(mu) = false;
  struct QueuedCaw {
    absl::AnyInvocable<void()> run;
    std::function<void(std::function<void()>)> post;
  };
  std::deque<QueuedCaw> caw_queue_ ABSL_GUARDED_BY(mu);
};

}  // namespace iser::scsi

#endif  // ISER_SCSI_LOGICAL_UNIT_H_
