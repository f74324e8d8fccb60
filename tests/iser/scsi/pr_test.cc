#include "tests/iser/scsi/scsi_test_util.h"
