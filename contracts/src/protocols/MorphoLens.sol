// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

import {IMorpho, MarketParams} from "@morpho-org/morpho-blue/src/interfaces/IMorpho.sol";
import {MorphoBalancesLib} from "@morpho-org/morpho-blue/src/libraries/periphery/MorphoBalancesLib.sol";

/// @title MorphoLens
/// @notice Test-only: Morpho's own periphery library MorphoBalancesLib (interest accrued
///         to block.timestamp, shares converted as Morpho does) as external views, so
///         tests compare crossmargin's codec with the protocol's figures at a pinned block.
contract MorphoLens {
    using MorphoBalancesLib for IMorpho;

    function expectedMarketBalances(IMorpho morpho, MarketParams memory params)
        external
        view
        returns (uint256, uint256, uint256, uint256)
    {
        return morpho.expectedMarketBalances(params);
    }

    function expectedSupplyAssets(IMorpho morpho, MarketParams memory params, address user)
        external
        view
        returns (uint256)
    {
        return morpho.expectedSupplyAssets(params, user);
    }

    function expectedBorrowAssets(IMorpho morpho, MarketParams memory params, address user)
        external
        view
        returns (uint256)
    {
        return morpho.expectedBorrowAssets(params, user);
    }
}
