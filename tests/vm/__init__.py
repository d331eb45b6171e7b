"""A throwaway VM whose root is the host's: for what the host kernel cannot do (LVM)."""
