// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {ERC4626} from "@openzeppelin/contracts/token/ERC20/extensions/ERC4626.sol";

/// @title DevVault
/// @notice OpenZeppelin ERC-4626 vault over any ERC-20, with a decimals offset of 3, so
///         shares have 3 more decimals than the asset and convertToAssets rounds down
///         through OpenZeppelin's virtual shares and assets.
contract DevVault is ERC4626 {
    constructor(IERC20 asset_, string memory name_, string memory symbol_)
        ERC20(name_, symbol_)
        ERC4626(asset_)
    {}

    function _decimalsOffset() internal pure override returns (uint8) {
        return 3;
    }
}
