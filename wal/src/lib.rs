//! Write-ahead log: CRC-chained records of entries and hard state in fsynced segments.
